// Worker bootstrap: TypeScript runs through tsx, as in the main thread (hooks are per thread).
import { register } from 'tsx/esm/api'

register()
await import('./ingest-worker.ts')
