// The protocol's Node reference server with its file store (log files + LMDB, fsync per
// append), for bench/durable_streams.py. Run from tests/e2e/durable_streams (its node_modules):
//   node --input-type=module -e "$(cat bench/durable_streams_ref_server.mjs)" <port> <dataDir>
import { DurableStreamTestServer } from "@durable-streams/server"

const [port, dataDir] = process.argv.slice(-2)
const server = new DurableStreamTestServer({
  host: "127.0.0.1",
  port: Number(port),
  dataDir,
  longPollTimeout: 20_000,
  compression: false,
})
console.log("listening on", await server.start())
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await server.stop()
    process.exit(0)
  })
}
