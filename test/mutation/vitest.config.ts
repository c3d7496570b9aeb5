import { defineConfig } from 'vitest/config'
import base from '../../vitest.config.ts'

/** The suite's config with only the test files named in MUTATION_TESTS (comma-separated): the ones that cover the mutated file. */
export default defineConfig({ ...base, test: { ...base.test, include: (process.env.MUTATION_TESTS ?? '').split(',').filter((t) => t !== '') } })
