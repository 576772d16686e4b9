import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.ts"],
    // One server shared by every test file: run the files one after the other.
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: process.env.DS_REPORT ?? "test-results/conformance.json" },
  },
})
