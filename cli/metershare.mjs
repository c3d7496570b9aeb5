#!/usr/bin/env -S node --max-semi-space-size=64
// The `metershare` command: TypeScript runs directly through tsx, no build step.
// Node's flags (the line above; the same in package.json's start script and the Dockerfile's
// entry point): a young generation of 64 MB semi-spaces, so that the objects of the publishes a
// broker holds in flight die young instead of being copied by every scavenge and promoted (see
// README, Configuration).
import { register } from 'tsx/esm/api'

register()
const { main } = await import('./main.ts')
process.exitCode = await main(process.argv.slice(2))
