// An AI SDK chat endpoint as a team would write it with the `ai` package's server helpers:
// createUIMessageStream + pipeUIMessageStreamToResponse. Usage: node aisdk_server.mjs [resume]
//
// Without "resume": POST /api/chat only (useChat's default); a dropped connection loses the
// answer. With "resume": every answer's SSE copy (consumeSseStream) is kept in memory, and
// GET /api/chat/<id>/stream replays the answer going from its start, then follows it live
// (what useChat({resume: true}) asks for); the generation goes on when the client drops.
// Prints {"port": N} once listening on 127.0.0.1.
import http from "node:http";
import { createUIMessageStream, pipeUIMessageStreamToResponse } from "ai";

const resume = process.argv[2] === "resume";
const WORDS = (
  "A durable session keeps every token of an answer in an ordered log, so that a client " +
  "which loses its connection can come back and continue where it stopped, and a second " +
  "device can follow the same answer while it is written."
).split(" ");
const going = new Map(); // chat id -> {chunks: [], done: bool, waiters: Set}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function answer() {
  return createUIMessageStream({
    execute: async ({ writer }) => {
      // a message id, as apps that keep their messages set it (generateMessageId)
      writer.write({ type: "start", messageId: `msg-${Math.random().toString(36).slice(2)}` });
      writer.write({ type: "text-start", id: "t1" });
      for (const [i, word] of WORDS.entries()) {
        writer.write({ type: "text-delta", id: "t1", delta: i ? ` ${word}` : word });
        await sleep(30);
      }
      writer.write({ type: "text-end", id: "t1" });
    },
  });
}

async function keep(id, stream) {
  const entry = { chunks: [], done: false, waiters: new Set() };
  going.set(id, entry);
  const wake = () => entry.waiters.forEach((w) => w());
  for await (const chunk of stream) {
    entry.chunks.push(chunk);
    wake();
  }
  entry.done = true;
  wake();
}

async function replay(entry, res) {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
  });
  let sent = 0;
  let wake = () => {};
  const onClose = () => wake();
  res.on("close", onClose);
  while (true) {
    while (sent < entry.chunks.length) res.write(entry.chunks[sent++]);
    if (entry.done || res.destroyed) break;
    await new Promise((r) => {
      wake = r;
      entry.waiters.add(r);
    });
    entry.waiters.delete(wake);
  }
  res.off("close", onClose);
  res.end();
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  const match = url.pathname.match(/^\/api\/chat\/([^/]+)\/stream$/);
  if (req.method === "POST" && url.pathname === "/api/chat") {
    let body = "";
    for await (const part of req) body += part;
    const { id } = JSON.parse(body);
    pipeUIMessageStreamToResponse({
      response: res,
      stream: answer(),
      consumeSseStream: resume ? ({ stream }) => keep(String(id), stream) : undefined,
    });
  } else if (resume && req.method === "GET" && match) {
    const entry = going.get(decodeURIComponent(match[1]));
    if (!entry || entry.done) {
      res.writeHead(204).end();
    } else {
      await replay(entry, res);
    }
  } else {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  }
});

server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
