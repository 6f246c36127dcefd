#!/usr/bin/env node
import { main } from './main'

// The only place the CLI sets its exit code. `sandbox app` keeps serving after main returns.
void main(process.argv).then(code => {
  process.exitCode = code
})
