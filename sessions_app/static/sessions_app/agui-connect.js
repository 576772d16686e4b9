// HttpAgent with connect(): reconnect to a run of a durable session (docs/sessions/agui.md).
//
// @ag-ui/client's HttpAgent has no connect(), so connectAgent() does nothing. This subclass
// remembers the offset of the last event it received (the SSE `id:` line) and implements
// connect() against the server's reconnect endpoint, which continues the run from there:
// RUN_STARTED, MESSAGES_SNAPSHOT up to that offset, the partial message reopened under its own
// id, then the rest. Use it with a bundler (bare imports of @ag-ui/client):
//
//   import { SessionsHttpAgent } from "./agui-connect.js";
//   const agent = new SessionsHttpAgent({ url: "/sessions/agui/", threadId: "chat-1", headers });
//   await agent.runAgent();          // streams; agent.abortRun() only closes the stream
//   await agent.connectAgent();      // continues the run where the stream stopped, once
//   await agent.cancel();            // stops the run itself (the agent acknowledges)
import { HttpAgent, runHttpRequest, transformHttpEventStream } from "@ag-ui/client";

const EMPTY_STREAM = () =>
  new Response("", { status: 200, headers: { "content-type": "text/event-stream" } });

export class SessionsHttpAgent extends HttpAgent {
  constructor(config) {
    super(config);
    // Where the last stream stopped; keep it (e.g. in sessionStorage) to resume after a reload.
    this.lastEventId = config.lastEventId;
    this.runId = undefined; // the agent's run id on the log (from RUN_STARTED)
    const send = this.fetch;
    this.fetch = (url, init) => this.#tracked(send, url, init);
    this.subscribe({
      onRunStartedEvent: ({ event }) => {
        this.runId = event.runId;
      },
    });
  }

  threadUrl(action) {
    const base = this.url.endsWith("/") ? this.url : `${this.url}/`;
    return `${base}${encodeURIComponent(this.threadId)}/${action}`;
  }

  connect(input) {
    const headers = { ...this.headers, Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    const version = input.protocolVersion ? `?protocolVersion=${input.protocolVersion}` : "";
    this.abortController = new AbortController();
    const init = { method: "GET", headers, signal: this.abortController.signal };
    return transformHttpEventStream(
      runHttpRequest(() => this.fetch(this.threadUrl("connect") + version, init)),
      this.debugLogger,
    );
  }

  // Cancel the run on the server (not the same as abortRun(), which only closes the stream).
  async cancel(runId = this.runId) {
    const response = await this.fetch(this.threadUrl("cancel"), {
      method: "POST",
      headers: { ...this.headers, "Content-Type": "application/json" },
      body: JSON.stringify(runId ? { runId } : {}),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(`cancel: HTTP ${response.status}: ${body.code}`);
    return body;
  }

  // The response with its body passed through unchanged, noting each complete event's id.
  async #tracked(send, url, init) {
    const response = await send(url, init);
    if (response.status === 204) return EMPTY_STREAM(); // nothing to continue
    if (!response.ok || !response.body) return response;
    const decoder = new TextDecoder();
    let buffer = "";
    const note = (text) => {
      buffer += text;
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        for (const line of event.split("\n")) {
          if (line.startsWith("id:")) this.lastEventId = line.slice(3).trim();
        }
      }
    };
    const body = response.body.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          controller.enqueue(chunk);
          note(decoder.decode(chunk, { stream: true }));
        },
      }),
    );
    return new Response(body, { status: response.status, headers: response.headers });
  }
}
