// The real AI SDK client against our server: node aisdk.mjs <package> <scenario> <base> <key> <chat>
// <package> is "ai" (the latest) or "ai5". Prints one JSON line: what the client ended with.
// An optional 6th argument: the base URL of another worker to resume from (stop-resume).
// Scenarios: chat, stop-resume (abort the fetch, then reconnect), chat-stop-resume (the Chat
// class: stop() then resumeStream()), stop-endpoint.
const [pkg, scenario, base, key, chat, otherBase] = process.argv.slice(2);
const { AbstractChat, DefaultChatTransport, readUIMessageStream } = await import(pkg);

const headers = { Authorization: `Bearer ${key}` };
const transport = new DefaultChatTransport({ api: `${base}/sessions/aisdk/chat`, headers });
const question = { id: `u-${pkg}-${scenario}-${Date.now()}`, role: "user",
  parts: [{ type: "text", text: "Tell me more" }] };

const textOf = (message) =>
  (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");

// Reads a chunk stream: the raw chunk types, and the assistant message readUIMessageStream builds.
async function consume(stream, { onText } = {}) {
  const [raw, ui] = stream.tee();
  const types = [];
  const chunks = (async () => {
    const reader = raw.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        types.push(value.type);
      }
    } catch (error) {
      types.push(`stream-error:${error.name}`);
    }
  })();
  let message;
  const errors = [];
  let updates = 0;
  try {
    for await (const snapshot of readUIMessageStream({ stream: ui, onError: (e) => errors.push(String(e)) })) {
      message = snapshot;
      updates += 1;
      onText?.(textOf(snapshot), updates);
    }
  } catch (error) {
    errors.push(`iteration:${error.name}`);
  }
  await chunks;
  return { id: message?.id, text: textOf(message), parts: message?.parts.map((p) => p.type), types, errors };
}

const send = (abortSignal) =>
  transport.sendMessages({ chatId: chat, trigger: "submit-message", messageId: undefined,
    messages: [question], abortSignal });

// A Chat without a UI framework (what useChat wraps).
class NodeChat extends AbstractChat {
  constructor(init) {
    const state = {
      status: "ready", error: undefined, messages: [],
      pushMessage(m) { this.messages = this.messages.concat(m); },
      popMessage() { this.messages = this.messages.slice(0, -1); },
      replaceMessage(i, m) { this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)]; },
      snapshot: (x) => structuredClone(x),
    };
    super({ ...init, state });
  }
}

let out;
if (scenario === "chat") {
  out = { first: await consume(await send(undefined)) };
  out.resumeAfterEnd = (await transport.reconnectToStream({ chatId: chat })) === null ? "none" : "stream";
} else if (scenario === "stop-resume") {
  const controller = new AbortController();
  const first = await consume(await send(controller.signal), {
    onText: (text, updates) => updates === 4 && controller.abort(),
  });
  const resumer = otherBase
    ? new DefaultChatTransport({ api: `${otherBase}/sessions/aisdk/chat`, headers })
    : transport;
  const resumed = await resumer.reconnectToStream({ chatId: chat });
  out = { first, resumed: resumed ? await consume(resumed) : null };
} else if (scenario === "chat-stop-resume") {
  const chatSession = new NodeChat({ id: chat, transport });
  const sent = chatSession.sendMessage({ text: "Tell me more" });
  const last = () => chatSession.messages.at(-1);
  for (let i = 0; i < 400 && !(last()?.role === "assistant" && textOf(last()).length > 20); i++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  await chatSession.stop();
  await sent.catch(() => {});
  const atStop = { status: chatSession.status, text: textOf(last()), id: last().id };
  await chatSession.resumeStream();
  out = { atStop, status: chatSession.status, error: chatSession.error?.message ?? null,
    messages: chatSession.messages.map((m) => ({ id: m.id, role: m.role, text: textOf(m) })) };
} else if (scenario === "stop-endpoint") {
  let stopped;
  const stop = () => fetch(`${base}/sessions/aisdk/chat/${chat}/stop`, { method: "POST", headers })
    .then(async (r) => ({ status: r.status, body: await r.json() }));
  const first = await consume(await send(undefined), {
    onText: (text, updates) => { if (updates === 4) stopped = stop(); },
  });
  out = { first, stop: await stopped };
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
console.log(JSON.stringify(out));
