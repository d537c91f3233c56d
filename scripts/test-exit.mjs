// Loaded into every test file's process by scripts/run-tests (node --test --import): the process
// ends once its tests have, even if a failed test leaked a handle (a child process, a client, a
// timer) that would keep it alive and hang the run. This replaces `--test-force-exit`, which with
// --test-concurrency > 1 silently drops a share of the test results in the parent (Node issue
// 64833: the summary counted 5 fewer tests than ran here, and a dropped failure would read green).
// The exit code is the one the test runner set (1 when a test failed). The timer is unref'd: a file
// that leaks nothing exits at once; the grace covers the file's own teardown hooks, which may run
// after this one.
import { after } from 'node:test';
import { setTimeout } from 'node:timers';

after(() => {
  setTimeout(() => process.exit(), 30_000).unref();
});
