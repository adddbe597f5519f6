/**
 * Playwright configuration of the jupyter-analyst browser tests.
 *
 * Uses the system chromium (no browser download), starts `jupyter lab` with
 * jupyter_server_test_config.py, and authenticates every browser request with the
 * server's token (an Authorization header), so the extension is tested behind real auth.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const PORT = process.env.JUPYTER_ANALYST_UI_PORT || '18888';
const TOKEN = process.env.JUPYTER_ANALYST_UI_TOKEN || 'analyst-ui-test-token';
process.env.JUPYTER_ANALYST_UI_PORT = PORT;
process.env.JUPYTER_ANALYST_UI_TOKEN = TOKEN;
// One root per test session, known to the tests (they read the saved notebooks from it).
if (!process.env.JUPYTERLAB_GALATA_ROOT_DIR) {
  process.env.JUPYTERLAB_GALATA_ROOT_DIR = fs.mkdtempSync(
    path.join(os.tmpdir(), 'jupyter-analyst-ui-')
  );
}
const JUPYTER = process.env.JUPYTER || path.resolve(__dirname, '..', '.venv', 'bin', 'jupyter');

module.exports = {
  ...baseConfig,
  testDir: './tests',
  outputDir: './test-results',
  timeout: 180 * 1000,
  expect: { timeout: 30 * 1000 },
  workers: 1,
  retries: 0,
  reporter: [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: {
    ...baseConfig.use,
    baseURL: `http://localhost:${PORT}`,
    extraHTTPHeaders: { Authorization: `token ${TOKEN}` },
    browserName: 'chromium',
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    },
    // a video needs playwright's own ffmpeg, which is not downloaded here
    video: 'off',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure'
  },
  webServer: {
    command: `"${JUPYTER}" lab --config jupyter_server_test_config.py`,
    url: `http://localhost:${PORT}/lab?token=${TOKEN}`,
    timeout: 120 * 1000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe'
  }
};
