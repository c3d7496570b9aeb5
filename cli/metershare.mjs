#!/usr/bin/env node
// The `metershare` command: TypeScript runs directly through tsx, no build step.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('./main.ts')
process.exitCode = await main(process.argv.slice(2))
