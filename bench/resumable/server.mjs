// Peer (b) of bench/capacity.py: Vercel's resumable-stream with Redis in a small Node server,
// set up the way the AI SDK's "resume streams" documentation shows, without Next.js:
//
//   POST /chat/<id>       the answer: the request body is the model's output, one UI message
//                         stream chunk (JSON) a line; it becomes the SSE text the AI SDK's
//                         toUIMessageStreamResponse writes (`data: <json>\n\n`, then
//                         `data: [DONE]\n\n`), handed to createNewResumableStream under a fresh
//                         stream id, which is saved as the chat's active stream (the docs'
//                         `activeStreamId`, here a Redis key) and cleared when the answer ends.
//                         The POST's own copy of the stream (what the AI SDK sends back to the
//                         device that asked) is read to the end here and dropped.
//   GET  /chat/<id>/stream  the docs' resume route: no active stream -> 204; otherwise
//                         resumeExistingStream(activeStreamId) as text/event-stream (from the
//                         start of the answer: the library replays its buffer, then follows).
//   GET  /                200 (readiness).
//
// Run (after `npm ci` here):  REDIS_URL=redis://... RS_KEY_PREFIX=... node server.mjs <port>
import { randomUUID } from "node:crypto"
import http from "node:http"
import { createClient } from "redis"
import { createResumableStreamContext } from "resumable-stream"

const port = Number(process.argv.at(-1))
const prefix = process.env.RS_KEY_PREFIX || "resumable-stream"
const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
  connection: "keep-alive",
  "x-vercel-ai-ui-message-stream": "v1",
}

// The chat store's activeStreamId (the docs keep it in the app's database; Redis here).
const store = createClient({ url: process.env.REDIS_URL })
await store.connect()
// As the README says for a long-running server: waitUntil null; publisher and subscriber are
// the library's own redis clients made from REDIS_URL.
const streams = createResumableStreamContext({ waitUntil: null, keyPrefix: prefix })
const activeKey = (chat) => `${prefix}:active:${chat}`

// The model's output (JSON lines) as the AI SDK's SSE text, one enqueue per piece received.
function sseFromLines(request) {
  request.setEncoding("utf8")
  const pieces = request[Symbol.asyncIterator]()
  let rest = ""
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        const { done, value } = await pieces.next()
        if (done) {
          controller.enqueue("data: [DONE]\n\n")
          controller.close()
          return
        }
        rest += value
        const lines = rest.split("\n")
        rest = lines.pop()
        const out = lines.filter((line) => line).map((line) => `data: ${JSON.stringify(JSON.parse(line))}\n\n`)
        if (out.length) {
          controller.enqueue(out.join(""))
          return
        }
      }
    },
  })
}

async function answer(request, response, chat) {
  const streamId = randomUUID()
  const stream = await streams.createNewResumableStream(streamId, () => sseFromLines(request))
  await store.set(activeKey(chat), streamId, { EX: 24 * 60 * 60 })
  let chars = 0
  for await (const piece of stream) chars += piece.length
  await store.del(activeKey(chat))
  response.writeHead(200, { "content-type": "application/json" })
  response.end(JSON.stringify({ streamId, chars }))
}

async function resume(request, response, chat) {
  const streamId = await store.get(activeKey(chat))
  const stream = streamId ? await streams.resumeExistingStream(streamId) : null
  if (!stream) {
    response.writeHead(204).end()
    return
  }
  response.writeHead(200, SSE_HEADERS)
  const reader = stream.getReader()
  response.on("close", () => reader.cancel().catch(() => {}))
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    response.write(value)
  }
  response.end()
}

const server = http.createServer((request, response) => {
  const parts = request.url.split("?")[0].split("/").filter(Boolean)
  let handled
  if (request.method === "POST" && parts.length === 2 && parts[0] === "chat") {
    handled = answer(request, response, parts[1])
  } else if (request.method === "GET" && parts.length === 3 && parts[0] === "chat" && parts[2] === "stream") {
    handled = resume(request, response, parts[1])
  } else {
    response.writeHead(parts.length === 0 ? 200 : 404).end("ok")
    return
  }
  handled.catch((error) => {
    console.error(error)
    if (!response.headersSent) response.writeHead(500)
    response.end()
  })
})
server.keepAliveTimeout = 60_000
server.listen(port, "127.0.0.1", () => console.log("listening on", port))
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0))
}
