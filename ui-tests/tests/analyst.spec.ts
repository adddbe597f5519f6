/**
 * The jupyter-analyst sidebar against a real Jupyter server running the server extension
 * with the rule-based baseline analyst (see jupyter_server_test_config.py).
 *
 * Screenshots of the states a user sees are attached to each test and saved under
 * ui-tests/test-results/.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { TestInfo } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const PANEL_ID = 'jupyter-analyst-panel';
const PANEL = `#${PANEL_ID}`;
const REPO = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.PYTHON || path.join(REPO, '.venv', 'bin', 'python');

test.use({ serverFiles: 'only-on-failure' });

/** A notebook whose first cell loads the penguins into `df`. */
function penguinsNotebook(): string {
  return JSON.stringify({
    cells: [
      {
        cell_type: 'code',
        execution_count: null,
        id: 'load-penguins',
        metadata: {},
        outputs: [],
        source: [
          'import pandas as pd\n',
          "df = pd.read_csv('penguins.csv')\n",
          'df.shape'
        ]
      }
    ],
    metadata: {
      kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' },
      language_info: { name: 'python' }
    },
    nbformat: 4,
    nbformat_minor: 5
  });
}

/** Upload the data and the notebook into the test folder, open it and run its cell. */
async function openPenguins(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  name: string
): Promise<string> {
  const notebook = `${tmpPath}/${name}`;
  expect(
    await page.contents.uploadFile(
      path.join(REPO, 'examples', 'penguins.csv'),
      `${tmpPath}/penguins.csv`
    )
  ).toBe(true);
  expect(await page.contents.uploadContent(penguinsNotebook(), 'text', notebook)).toBe(true);
  expect(await page.notebook.openByPath(notebook)).toBe(true);
  await page.notebook.activate(name);
  await page.notebook.runCell(0, true);
  await expect(page.locator('.jp-Cell').first().locator('.jp-OutputArea-output')).toContainText(
    '(344, 8)'
  );
  return notebook;
}

async function openSidebar(page: IJupyterLabPageFixture): Promise<void> {
  await page.sidebar.openTab(PANEL_ID);
  await expect(page.locator(PANEL)).toBeVisible();
}

async function shot(page: IJupyterLabPageFixture, testInfo: TestInfo, name: string): Promise<void> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file });
  await testInfo.attach(name, { path: file, contentType: 'image/png' });
}

/** Pick `df`, type a question and start the run. */
async function startRun(page: IJupyterLabPageFixture, question: string): Promise<void> {
  const picker = page.locator(`${PANEL} [data-testid="analyst-dataframe"]`);
  await expect(picker.locator('option[value="df"]')).toHaveCount(1);
  await expect(picker.locator('option[value="df"]')).toHaveText('df — 344 × 8');
  await picker.selectOption('df');
  await page.locator(`${PANEL} [data-testid="analyst-question"]`).fill(question);
  const analyze = page.locator(`${PANEL} [data-testid="analyst-analyze"]`);
  await expect(analyze).toBeEnabled();
  await analyze.click();
}

/** The notebook as the server's contents API returns it. */
async function fetchNotebook(page: IJupyterLabPageFixture, notebook: string): Promise<any> {
  const response = await page.request.get(`/api/contents/${notebook}?content=1&type=notebook`);
  expect(response.ok()).toBe(true);
  return (await response.json()).content;
}

function agentCells(nb: any): any[] {
  return nb.cells.filter((cell: any) => cell.metadata?.jupyter_analyst);
}

/** nbformat's own validation of the file the server wrote. */
function validateOnDisk(notebook: string): void {
  const root = process.env.JUPYTERLAB_GALATA_ROOT_DIR!;
  const file = path.join(root, notebook);
  expect(fs.existsSync(file)).toBe(true);
  execFileSync(PYTHON, [
    '-c',
    'import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))',
    file
  ]);
}

/** WCAG contrast ratio of an element's text colour on its background colour. */
async function contrast(page: IJupyterLabPageFixture, selector: string): Promise<number> {
  return page.locator(selector).evaluate((node: Element) => {
    const style = getComputedStyle(node);
    const rgb = (value: string) => (value.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
    const luminance = (value: string) => {
      const [r, g, b] = rgb(value).map(c => {
        const v = c / 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const [a, b] = [luminance(style.color), luminance(style.backgroundColor)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  });
}

test.describe('Analyst sidebar', () => {
  test('shows an empty state without a notebook', async ({ page }, testInfo) => {
    await openSidebar(page);
    await expect(page.locator(`${PANEL} [data-testid="analyst-empty"]`)).toContainText(
      'Open a notebook'
    );
    await expect(page.locator(`${PANEL} [data-testid="analyst-analyze"]`)).toBeHidden();
    await shot(page, testInfo, 'empty-state');
  });

  test('analyzes df live, shows the conclusions and exports the report', async ({
    page,
    tmpPath
  }, testInfo) => {
    const notebook = await openPenguins(page, tmpPath, 'penguins.ipynb');
    await openSidebar(page);
    await shot(page, testInfo, 'picker');

    const cellsBefore = await page.notebook.getCellCount();
    await startRun(page, 'What drives body mass?');

    // the run goes live: steps appear in the panel and agent cells in the notebook
    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    await expect(state).toHaveAttribute('data-state', /starting|running|finished/);
    const steps = page.locator(`${PANEL} .jp-Analyst-step[data-cell-id]`);
    await expect(steps.nth(1)).toBeVisible();
    await shot(page, testInfo, 'running');
    await expect
      .poll(async () => page.notebook.getCellCount(), { timeout: 30000 })
      .toBeGreaterThan(cellsBefore + 2);

    // it ends with conclusions, rendered as markdown in the panel
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 150000 });
    const conclusions = page.locator(`${PANEL} [data-testid="analyst-conclusions"]`);
    await expect(conclusions).toBeVisible();
    await expect(conclusions).toContainText('conclusions written');
    await expect(conclusions.locator('.jp-RenderedMarkdown')).not.toBeEmpty();
    await expect(
      page.locator(`${PANEL} .jp-Analyst-step[data-status="ok"]`).first()
    ).toBeVisible();
    await expect(page.locator(`${PANEL} .jp-Analyst-step[data-status="running"]`)).toHaveCount(0);
    await shot(page, testInfo, 'finished');

    // clicking a step selects its cell in the notebook, in command mode (even when the
    // user was editing a cell): stray typing must not edit the analyst's cell
    await page.evaluate(() => {
      (window as any).jupyterapp.shell.currentWidget.content.mode = 'edit';
    });
    const target = steps.nth(3);
    const cellId = await target.getAttribute('data-cell-id');
    await target.click();
    await expect
      .poll(async () =>
        page.evaluate(() => {
          const widget = (window as any).jupyterapp.shell.currentWidget;
          return `${widget?.content?.activeCell?.model?.id ?? null} ${widget?.content?.mode}`;
        })
      )
      .toBe(`${cellId} command`);

    // export: the report's paths are shown and the files exist
    await page.locator(`${PANEL} [data-testid="analyst-export"]`).click();
    const result = page.locator(`${PANEL} [data-testid="analyst-export-result"]`);
    await expect(result.locator('a')).toHaveCount(2);
    const ipynb = await result.locator('a').first().getAttribute('data-path');
    expect(ipynb).toMatch(/\.ipynb$/);
    expect(await page.contents.fileExists(ipynb!)).toBe(true);
    await shot(page, testInfo, 'exported');

    // the notebook the server saved holds the agent's cells, with outputs, and validates
    await expect
      .poll(async () => agentCells(await fetchNotebook(page, notebook)).length, { timeout: 20000 })
      .toBeGreaterThan(5);
    const saved = await fetchNotebook(page, notebook);
    const agent = agentCells(saved);
    const code = agent.filter((c: any) => c.cell_type === 'code');
    expect(code.length).toBeGreaterThan(3);
    expect(code.filter((c: any) => c.outputs.length > 0).length).toBeGreaterThan(2);
    expect(agent.some((c: any) => (c.metadata.tags ?? []).includes('jupyter-analyst'))).toBe(true);
    expect(saved.cells[0].source).toContain("pd.read_csv('penguins.csv')");
    validateOnDisk(notebook);
  });

  test('stops a run midway with a stop note', async ({ page, tmpPath }, testInfo) => {
    const notebook = await openPenguins(page, tmpPath, 'stop-me.ipynb');
    await openSidebar(page);
    await startRun(page, '');

    // stop as soon as the first code cell has run
    const stop = page.locator(`${PANEL} [data-testid="analyst-stop"]`);
    await expect(page.locator(`${PANEL} .jp-Analyst-step[data-status="ok"]`).first()).toBeVisible({
      timeout: 60000
    });
    await expect(stop).toBeEnabled();
    await stop.click();

    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    await expect(state).toHaveAttribute('data-state', 'stopped', { timeout: 15000 });
    await expect(page.locator(`${PANEL} [data-testid="analyst-conclusions"]`)).toContainText(
      'stopped by you'
    );
    await expect(stop).toBeHidden();
    // the server wrote the stop note as the notebook's last cell
    const note = page.locator('.jp-NotebookPanel .jp-MarkdownCell').last();
    await expect(note).toContainText('Run ended without conclusions', { timeout: 15000 });
    await note.scrollIntoViewIfNeeded();
    await shot(page, testInfo, 'stopped');

    await expect
      .poll(async () => {
        const nb = await fetchNotebook(page, notebook);
        return agentCells(nb).some((c: any) =>
          String(Array.isArray(c.source) ? c.source.join('') : c.source).includes(
            'Run ended without conclusions'
          )
        );
      }, { timeout: 20000 })
      .toBe(true);
    const saved = await fetchNotebook(page, notebook);
    expect(agentCells(saved).some((c: any) => c.metadata.jupyter_analyst.role === 'conclusions')).toBe(
      false
    );
    // a stop is not an error: no red step, no traceback left in the notebook
    await expect(page.locator(`${PANEL} .jp-Analyst-step[data-status="error"]`)).toHaveCount(0);
    expect(
      agentCells(saved).some((c: any) => (c.outputs || []).some((o: any) => o.output_type === 'error'))
    ).toBe(false);
    validateOnDisk(notebook);

    // the analyze button is back for the next run
    await expect(page.locator(`${PANEL} [data-testid="analyst-analyze"]`)).toBeEnabled();
  });

  test('follows up, lists the runs, discards and undoes, appends at the active cell', async ({
    page,
    tmpPath
  }, testInfo) => {
    // a name of its own: the server remembers runs by path, also those of an earlier try
    const notebook = await openPenguins(page, tmpPath, `runs-${Date.now()}.ipynb`);
    await page.evaluate(async () => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      await registry.set('jupyter-analyst:plugin', 'maxSteps', 6);
    });
    await openSidebar(page);
    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    const items = page.locator(`${PANEL} [data-testid="analyst-run-item"]`);
    const followUp = page.locator(`${PANEL} [data-testid="analyst-follow-up"]`);
    await expect(followUp).toBeHidden(); // nothing to follow up yet
    await startRun(page, 'How does body mass differ by species?');
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
    await expect(items).toHaveCount(1);
    const first = await items.first().getAttribute('data-run-id');

    // the follow-up: same kernel, its cells right after the earlier run's
    await page.locator(`${PANEL} [data-testid="analyst-question"]`).fill('Now compare by island');
    await expect(followUp).toBeEnabled();
    await followUp.click();
    await expect(items).toHaveCount(2, { timeout: 30000 });
    await expect(items.first()).toContainText('Follow-up: “Now compare by island”');
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
    const second = await items.first().getAttribute('data-run-id');
    await shot(page, testInfo, 'run-list');
    let saved = await fetchNotebook(page, notebook);
    await expect
      .poll(async () => agentCells(await fetchNotebook(page, notebook)).filter(
        (c: any) => c.metadata.jupyter_analyst.run_id === second
      ).length, { timeout: 20000 })
      .toBeGreaterThan(1);
    saved = await fetchNotebook(page, notebook);
    const owners = saved.cells.map((c: any) => c.metadata?.jupyter_analyst?.run_id ?? null);
    expect(owners.lastIndexOf(first)).toBeLessThan(owners.indexOf(second));
    const cellsWithBoth = await page.notebook.getCellCount();
    const secondCells = owners.filter((o: string | null) => o === second).length;

    // discard the follow-up (asked first), then undo it
    await items.first().locator('[data-action="discard"]').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText('Discard this run?');
    await expect(dialog).toContainText('Also delete the variables it made');
    await shot(page, testInfo, 'discard-dialog');
    await dialog.locator('.jp-mod-warn', { hasText: 'Discard' }).click();
    await expect(items.first()).toContainText('discarded');
    await expect(page.locator(`${PANEL} [data-testid="analyst-run-list-status"]`)).toContainText(
      `Discarded ${secondCells} cell`
    );
    await expect.poll(async () => page.notebook.getCellCount()).toBe(cellsWithBoth - secondCells);
    await expect(followUp).toBeHidden(); // nothing left to follow up
    await shot(page, testInfo, 'discarded');
    await items.first().locator('[data-action="restore"]').click();
    await expect.poll(async () => page.notebook.getCellCount()).toBe(cellsWithBoth);
    await expect(items.first()).not.toContainText('discarded');
    await expect(followUp).toBeVisible();
    await expect
      .poll(async () =>
        (await fetchNotebook(page, notebook)).cells.map(
          (c: any) => c.metadata?.jupyter_analyst?.run_id ?? null
        )
      , { timeout: 20000 })
      .toEqual(owners);

    // "Show" puts an older run back in the panel; a later listing does not switch away
    await items.nth(1).locator('[data-action="show"]').click();
    await expect(items.nth(1)).toHaveClass(/jp-mod-shown/);
    await expect(followUp).toBeVisible();

    // a new run after the active cell, as the setting asks
    await page.evaluate(async () => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      await registry.set('jupyter-analyst:plugin', 'appendAt', 'active-cell');
      await registry.set('jupyter-analyst:plugin', 'maxSteps', 2);
    });
    await page.notebook.selectCells(0);
    await startRun(page, '');
    await expect(items).toHaveCount(3, { timeout: 30000 });
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
    const third = await items.first().getAttribute('data-run-id');
    await expect
      .poll(async () => (await fetchNotebook(page, notebook)).cells[1]?.metadata?.jupyter_analyst?.run_id ?? null, {
        timeout: 20000
      })
      .toBe(third);
    validateOnDisk(notebook);
  });

  test('reattaches after a reload while the run waits for the user\'s cell', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openPenguins(page, tmpPath, `reload-${Date.now()}.ipynb`);
    await page.evaluate(async () => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      await registry.set('jupyter-analyst:plugin', 'maxSteps', 3);
    });
    await openSidebar(page);
    const picker = page.locator(`${PANEL} [data-testid="analyst-dataframe"]`);
    await expect(picker.locator('option[value="df"]')).toHaveCount(1);
    // the user's own cell keeps the kernel busy; the run queues behind it
    await page.notebook.addCell('code', "import time\ntime.sleep(25)\nopen('my-cell-finished.txt', 'w').write('yes')");
    await page.notebook.runCell(1, { wait: false });
    await startRun(page, 'Which species is heaviest?');
    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    await expect(state).toContainText('waiting for your running cell to finish');

    // a plain reload: galata's waits for the launcher, which a restored notebook hides
    await page.reload({ waitForIsReady: false });
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached', timeout: 60000 });
    await openSidebar(page);
    // the same run, its question, and no message blaming the kernel for the analyst's run
    await expect(state).toHaveAttribute('data-state', /starting|running/);
    await expect(state).toContainText('Which species is heaviest?');
    await expect(page.locator(`${PANEL} [data-testid="analyst-question"]`)).toHaveValue(
      'Which species is heaviest?'
    );
    await expect(page.locator(`${PANEL} [data-testid="analyst-error"]`)).toBeHidden();
    await expect(page.locator(`${PANEL} [data-testid="analyst-stop"]`)).toBeVisible();
    await shot(page, testInfo, 'reattached');
    // it goes on to its end once the user's cell is done, and that cell was not interrupted
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 90000 });
    // (its output went to the page before the reload; the file it writes shows it ran on)
    expect(await page.contents.fileExists(`${tmpPath}/my-cell-finished.txt`)).toBe(true);
  });

  test('the magic writes into its own notebook after a rename, and follows up', async ({
    page,
    tmpPath
  }) => {
    const first = `magic-${Date.now()}.ipynb`;
    await openPenguins(page, tmpPath, first);
    // rename it in JupyterLab (the kernel's session follows; its JPY_SESSION_NAME does not)
    const renamed = `${tmpPath}/sales_review-${Date.now()}.ipynb`;
    await page.evaluate(
      async ([from, to]) => {
        await (window as any).jupyterapp.serviceManager.contents.rename(from, to);
      },
      [`${tmpPath}/${first}`, renamed]
    );
    await expect(page.locator('.jp-mod-current .lm-TabBar-tabLabel')).toHaveText(path.basename(renamed));
    await openSidebar(page);
    await page.notebook.addCell(
      'code',
      '%load_ext jupyter_analyst\n%analyst df "Which species is heaviest?" --max-steps 3'
    );
    await page.notebook.runCell(1);
    const output = page.locator('.jp-Cell').nth(1).locator('.jp-OutputArea-output');
    await expect(output).toContainText(`started on ${renamed}`);
    const items = page.locator(`${PANEL} [data-testid="analyst-run-item"]`);
    await expect(items).toHaveCount(1, { timeout: 30000 });
    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
    await expect
      .poll(async () => agentCells(await fetchNotebook(page, renamed)).length, { timeout: 20000 })
      .toBeGreaterThan(1);

    // %analyst --follow-up continues that run, in the same notebook
    const cells = await page.notebook.getCellCount();
    await page.notebook.addCell('code', '%analyst --follow-up "And by island?" --max-steps 3');
    await page.notebook.runCell(cells);
    await expect(page.locator('.jp-Cell').nth(cells).locator('.jp-OutputArea-output')).toContainText(
      'analyst: run '
    );
    await expect(items).toHaveCount(2, { timeout: 30000 });
    await expect(items.first()).toContainText('Follow-up: “And by island?”');
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
  });

  test('sends the profile and step budget from the settings', async ({ page, tmpPath }, testInfo) => {
    await openPenguins(page, tmpPath, 'settings.ipynb');
    await page.evaluate(async () => {
      const registry = await (window as any).galata.getPlugin(
        '@jupyterlab/apputils-extension:settings'
      );
      await registry.set('jupyter-analyst:plugin', 'profile', 'baseline');
      await registry.set('jupyter-analyst:plugin', 'maxSteps', 3);
    });
    await openSidebar(page);
    await expect(page.locator(`${PANEL} .jp-Analyst-modelLine`)).toHaveText(
      'Model: baseline (from settings)'
    );
    await startRun(page, '');
    const state = page.locator(`${PANEL} [data-testid="analyst-run-state"]`);
    await expect(state).toContainText('/3');
    await expect(state).toHaveAttribute('data-state', 'finished', { timeout: 60000 });
    const conclusions = page.locator(`${PANEL} [data-testid="analyst-conclusions"]`);
    await expect(conclusions).toContainText('No conclusions');
    await expect(conclusions).toContainText('step budget used up');
    await shot(page, testInfo, 'budget');
  });

  test('keeps a question per notebook', async ({ page, tmpPath }) => {
    await openPenguins(page, tmpPath, 'first.ipynb');
    const second = `${tmpPath}/second.ipynb`; // beside the first, on the same data
    expect(await page.contents.uploadContent(penguinsNotebook(), 'text', second)).toBe(true);
    expect(await page.notebook.openByPath(second)).toBe(true);
    await page.notebook.activate('second.ipynb');
    await openSidebar(page);
    const box = page.locator(`${PANEL} [data-testid="analyst-question"]`);
    await expect(box).toHaveAttribute('placeholder', /What do you want to find out/);
    await box.fill('Which island has the heaviest penguins?');
    await page.notebook.activate('first.ipynb');
    await expect(box).toHaveValue('');
    await box.fill('How does flipper length vary?');
    await page.notebook.activate('second.ipynb');
    await expect(box).toHaveValue('Which island has the heaviest penguins?');
    await page.notebook.activate('first.ipynb');
    await expect(box).toHaveValue('How does flipper length vary?');
  });

  test('shows API errors as readable messages', async ({ page, tmpPath }, testInfo) => {
    await openPenguins(page, tmpPath, 'errors.ipynb');
    await openSidebar(page);
    await page.evaluate(() =>
      (window as any).jupyterapp.commands.execute('jupyter-analyst:analyze', {
        variable: 'no_such_frame'
      })
    );
    const error = page.locator(`${PANEL} [data-testid="analyst-error"]`);
    await expect(error).toBeVisible({ timeout: 90000 }); // the server's facts check may take up to 60 s
    await expect(error).toContainText('no_such_frame');
    await expect(error).not.toContainText('Traceback');
    await shot(page, testInfo, 'error');
    // readable in both themes: WCAG contrast of the banner's text on its background
    expect(await contrast(page, `${PANEL} [data-testid="analyst-error"]`)).toBeGreaterThan(4.5);
    await page.theme.setDarkTheme();
    await expect(page.locator('body')).toHaveAttribute('data-jp-theme-light', 'false');
    await expect(error).toBeVisible();
    expect(await contrast(page, `${PANEL} [data-testid="analyst-error"]`)).toBeGreaterThan(4.5);
    await shot(page, testInfo, 'error-dark-theme');
  });

  test('registers its commands in the palette', async ({ page }) => {
    const labels = await page.evaluate(() => {
      const app = (window as any).jupyterapp;
      return [
        'jupyter-analyst:open',
        'jupyter-analyst:analyze',
        'jupyter-analyst:stop',
        'jupyter-analyst:export'
      ].map(id => (app.commands.hasCommand(id) ? app.commands.label(id) : null));
    });
    expect(labels.every(Boolean)).toBe(true);

    // the settings schema reaches the Settings Editor
    const schema = await page.evaluate(async () => {
      const settings = await (window as any).jupyterapp.serviceManager.settings.fetch(
        'jupyter-analyst:plugin'
      );
      return Object.keys(settings.schema.properties ?? {}).sort();
    });
    expect(schema).toEqual(['appendAt', 'keepFailedCells', 'maxSteps', 'profile']);
    await page.keyboard.press('Control+Shift+C');
    await page.locator('.lm-CommandPalette-input').fill('Analyst');
    await expect(page.locator('.lm-CommandPalette-item', { hasText: 'Open the Analyst Sidebar' })).toBeVisible();
  });
});

