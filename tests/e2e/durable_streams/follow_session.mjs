// Follows a session with the protocol's own TypeScript client, live, until RUN_FINISHED.
// Usage: node follow_session.mjs <stream url> <bearer token> <long-poll|sse>
// Prints "ready" once caught up, then one JSON line per event received, then "done".
import { stream } from "@durable-streams/client"

const [url, token, mode] = process.argv.slice(2)
const controller = new AbortController()
const res = await stream({
  url,
  offset: "-1",
  live: mode,
  headers: { Authorization: `Bearer ${token}` },
  signal: controller.signal,
  warnOnHttp: false,
})
let ready = false
res.subscribeJson(async (batch) => {
  for (const event of batch.items) {
    console.log(JSON.stringify({ offset: batch.offset, event }))
    if (event.type === "RUN_FINISHED") {
      console.log("done")
      controller.abort()
      process.exit(0)
    }
  }
  if (batch.upToDate && !ready) {
    ready = true
    console.log("ready")
  }
})
setTimeout(() => {
  console.log("timeout")
  process.exit(2)
}, 60_000)
