import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.ts"],
    // One server shared by every test file: run the files one after the other.
    fileParallelism: false,
    // vitest's default is 5 s a test: the property-based tests (fast-check, many requests each)
    // passed it on a loaded CI machine and failed as timeouts, not as wrong answers. A test that
    // waits on purpose (long-poll) has its own timeout.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", "json"],
    outputFile: { json: process.env.DS_REPORT ?? "test-results/conformance.json" },
  },
})
