// Stryker 9.6.1 (10.x needs Node 22) on one source file and the test files that cover it. See README.md.
const mutate = process.env.MUTATION_FILES
if (!mutate || !process.env.MUTATION_TESTS) throw new Error('set MUTATION_FILES and MUTATION_TESTS (comma-separated paths)')
const name = mutate.split(',')[0].replace(/^.*\//, '').replace(/\.ts(:.*)?$/, '')

export default {
  testRunner: 'vitest',
  vitest: { configFile: 'test/mutation/vitest.config.ts', related: false },
  mutate: mutate.split(','),
  coverageAnalysis: 'perTest',
  concurrency: 2,
  timeoutMS: 60_000,
  dryRunTimeoutMinutes: 10,
  reporters: ['json', 'progress-append-only'],
  jsonReporter: { fileName: `scratch/mutation/${name}.json` },
  tempDirName: `scratch/mutation/.stryker-tmp-${name}`,
  cleanTempDir: true,
}
