// The real AG-UI client against our server: node agui.mjs <scenario> <base> <key> <thread>
// Prints one JSON line: what the client ended with. Scenarios: run, team, abort-reconnect
// (an optional 5th argument: the base URL of another worker to reconnect to), cancel.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// The shipped static file imports "@ag-ui/client": put it where that resolves (our node_modules).
const shipped = join(here, "../../../sessions_app/static/sessions_app/agui-connect.js");
mkdirSync(join(here, "node_modules/.sessions"), { recursive: true });
copyFileSync(shipped, join(here, "node_modules/.sessions/agui-connect.mjs"));
const { SessionsHttpAgent } = await import("./node_modules/.sessions/agui-connect.mjs");

const [scenario, base, key, thread, otherBase] = process.argv.slice(2);
const agent = new SessionsHttpAgent({
  url: `${base}/sessions/agui/`,
  headers: { Authorization: `Bearer ${key}` },
  threadId: thread,
  initialMessages: [{ id: `u-${scenario}-${Date.now()}`, role: "user",
    content: scenario === "team" ? "/team a trip to Lisbon" : "Tell me more" }],
});

const seen = { events: [], outcomes: [], errors: [], failures: [] };
const contentEvents = () => seen.events.filter((t) => t === "TEXT_MESSAGE_CONTENT").length;
let onContent = () => {};
agent.subscribe({
  onEvent: ({ event }) => {
    seen.events.push(event.type);
  },
  onTextMessageContentEvent: () => onContent(),
  onRunFinishedEvent: ({ outcome }) => {
    seen.outcomes.push(outcome);
  },
  onRunErrorEvent: ({ event }) => {
    seen.errors.push(event.code ?? event.message);
  },
  onRunFailed: ({ error }) => {
    seen.failures.push(error.message);
  },
});

const report = (extra = {}) =>
  console.log(JSON.stringify({ messages: agent.messages, state: agent.state, runId: agent.runId,
    lastEventId: agent.lastEventId, ...seen, ...extra }));

if (scenario === "run") {
  // Another producer (a tool, a back office) sets the shared state while the agent answers.
  let stateSet;
  agent.subscribe({
    onRunStartedEvent: ({ event }) => {
      stateSet = fetch(`${base}/api/sessions/${thread}/events`, {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
        body: JSON.stringify({ events: [{ type: "STATE_SNAPSHOT", run: event.runId,
          data: { snapshot: { stage: "answered", by: event.runId } } }] }),
      });
    },
  });
  const { result, newMessages } = await agent.runAgent({ runId: "client-run-1" });
  await stateSet;
  report({ result: result ?? null, newMessages });
} else if (scenario === "team") {
  const subagents = [];
  agent.subscribe({ onSubagentStartedEvent: ({ event }) => { subagents.push(event.name); } });
  await agent.runAgent();
  report({ subagents });
} else if (scenario === "abort-reconnect") {
  onContent = () => {
    if (contentEvents() === 3) agent.abortRun();
  };
  await agent.runAgent().catch((error) => seen.failures.push(`runAgent: ${error.message}`));
  const atAbort = { lastEventId: agent.lastEventId, events: seen.events.length,
    text: agent.messages.at(-1)?.content };
  onContent = () => {};
  if (otherBase) agent.url = `${otherBase}/sessions/agui/`;
  await agent.connectAgent();
  report({ atAbort });
} else if (scenario === "cancel") {
  let cancelled;
  onContent = () => {
    if (contentEvents() === 3) cancelled = agent.cancel();
  };
  await agent.runAgent();
  report({ cancel: await cancelled });
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
