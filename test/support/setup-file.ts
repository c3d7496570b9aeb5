import { configureLogging } from '../../shared/logger.ts'

// Tests are quiet unless asked: TEST_LOG_LEVEL=debug npx vitest run …
configureLogging({ level: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent' })
