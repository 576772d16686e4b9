// An AI SDK agent server as a team would run it, for the gateway's tests (tests/e2e/test_gateway.py):
// node gateway_upstream.mjs <port>. POST / takes {messages: UIMessage[]} and answers with the
// UI message stream of streamText over the SDK's own offline mock model. The last user text picks
// the answer: "slow" streams 200 words slowly (for a cancel), "tool" calls a weather tool, then
// answers; anything else is echoed. GET /log tells what the server saw: the requests' messages
// and the requests whose client went away before the answer ended.
import http from "node:http";
import { convertToModelMessages, simulateReadableStream, stepCountIs, streamText, tool } from "ai";
import { MockLanguageModelV4 } from "ai/test";
import { z } from "zod";

const port = Number(process.argv[2]);
const seen = { requests: [], aborted: [] };

const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined } };
const finish = { type: "finish", finishReason: { unified: "stop", raw: undefined }, usage };
const words = (text) => text.split(/(?<= )/).map((delta) => ({ type: "text-delta", id: "t", delta }));
const answer = (text, delay = 0) => ({
  stream: simulateReadableStream({
    chunks: [{ type: "text-start", id: "t" }, ...words(text), { type: "text-end", id: "t" }, finish],
    chunkDelayInMs: delay,
  }),
});

function model(last) {
  if (last.includes("slow")) {
    return new MockLanguageModelV4({ doStream: answer("word ".repeat(200), 50) });
  }
  if (last.includes("tool")) {
    const call = { type: "tool-call", toolCallId: "call-1", toolName: "weather",
      input: JSON.stringify({ city: "Paris" }) };
    const first = { stream: simulateReadableStream({ chunks: [call,
      { ...finish, finishReason: { unified: "tool-calls", raw: undefined } }] }) };
    return new MockLanguageModelV4({ doStream: [first, answer("Clear skies in Paris.")] });
  }
  return new MockLanguageModelV4({ doStream: answer(`You said: ${last}`) });
}

const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, sky: "clear" }),
});

async function chat(req, res) {
  let body = "";
  for await (const piece of req) body += piece;
  const { messages } = JSON.parse(body);
  seen.requests.push(messages);
  const last = messages.at(-1).parts.map((p) => p.text ?? "").join("");
  const stop = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) {
      seen.aborted.push(last);
      stop.abort();
    }
  });
  const result = streamText({
    model: model(last), messages: await convertToModelMessages(messages),
    tools: { weather }, stopWhen: stepCountIs(3), abortSignal: stop.signal,
  });
  result.pipeUIMessageStreamToResponse(res);
}

http.createServer((req, res) => {
  if (req.method === "POST") {
    chat(req, res).catch((error) => { res.statusCode = 500; res.end(String(error)); });
  } else {
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(seen));
  }
}).listen(port, "127.0.0.1");
