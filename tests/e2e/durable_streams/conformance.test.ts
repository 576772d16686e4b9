// The public Durable Streams conformance suite, run against our server.
// DS_BASE_URL: scheme://host:port of a server whose SESSIONS_ANONYMOUS_STREAM_PREFIX is ""
// (tests/e2e/test_durable_streams_conformance.py starts one and sets it).
// DS_LONG_POLL_TIMEOUT_MS: the server's long-poll timeout; must stay well under vitest's 5 s.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

runConformanceTests({
  baseUrl: process.env.DS_BASE_URL ?? "http://127.0.0.1:8000",
  longPollTimeoutMs: Number(process.env.DS_LONG_POLL_TIMEOUT_MS ?? 1000),
})
