/**
 * The "Model profile" setting in JupyterLab's Settings Editor: a drop-down filled from the
 * real server's `GET jupyter-analyst/profiles` (the test server's built-in profiles), each
 * with its memory estimate, whose choice reaches the sidebar.
 *
 * User settings are Galata's in-memory ones (a fresh set per test).
 */
import { expect, galata, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import type { TestInfo } from '@playwright/test';

const PLUGIN_ID = 'jupyter-analyst:plugin';
const PANEL_ID = 'jupyter-analyst-panel';
const MODEL_LINE = `#${PANEL_ID} .jp-Analyst-modelLine`;
/** rjsf's id of the field: the form's idPrefix (`jp-SettingsEditor-<plugin>`) + `_profile`. */
const PROFILE_SELECT = `select[id="jp-SettingsEditor-${PLUGIN_ID}_profile"]`;

interface IProfile {
  name: string;
  description: string;
  kind: string;
  memory_gb: number;
}

/** The server's own reply, which the drop-down must show. */
async function serverProfiles(
  page: IJupyterLabPageFixture
): Promise<{ default: string; profiles: IProfile[] }> {
  const response = await page.request.get('/jupyter-analyst/profiles');
  expect(response.ok()).toBe(true);
  return response.json();
}

/** Open the form-based Settings Editor on the Analyst settings. */
async function openAnalystSettings(page: IJupyterLabPageFixture): Promise<void> {
  await page.evaluate(async () => {
    await (window as any).jupyterapp.commands.execute('settingeditor:open', {
      query: 'Analyst'
    });
  });
  await page.locator('.jp-PluginList-entry', { hasText: 'Analyst' }).first().click();
  await expect(page.locator(PROFILE_SELECT)).toBeVisible();
}

async function shot(page: IJupyterLabPageFixture, testInfo: TestInfo, name: string): Promise<void> {
  const file = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path: file });
  await testInfo.attach(name, { path: file, contentType: 'image/png' });
}

/** What the drop-down shows for a profile: its name and memory estimate. */
function optionTitle(profile: IProfile): string {
  const memory =
    profile.memory_gb > 0
      ? `≈ ${profile.memory_gb.toFixed(1)} GB`
      : profile.kind === 'openai'
        ? 'served elsewhere'
        : 'no model to load';
  return `${profile.name} (${memory})`;
}

/** The user's value of the profile setting, as the setting registry holds it. */
async function savedProfile(page: IJupyterLabPageFixture): Promise<unknown> {
  return page.evaluate(async id => {
    const registry = await (window as any).galata.getPlugin(
      '@jupyterlab/apputils-extension:settings'
    );
    return (await registry.get(id, 'profile')).user;
  }, PLUGIN_ID);
}

test.use({ serverFiles: 'only-on-failure' });

test.describe('Model profile setting', () => {
  test('picks a server profile from a drop-down with memory estimates', async ({
    page
  }, testInfo) => {
    const reply = await serverProfiles(page);
    expect(reply.profiles.some(p => p.memory_gb > 0)).toBe(true);
    await openAnalystSettings(page);
    const select = page.locator(PROFILE_SELECT);
    const options = select.locator('option');
    await expect(options).toHaveCount(reply.profiles.length + 1);
    expect(await options.allTextContents()).toEqual([
      `Server default (${reply.default})`,
      ...reply.profiles.map(optionTitle)
    ]);
    await expect(select.locator('option:checked')).toHaveText(
      `Server default (${reply.default})`
    );

    const chosen = reply.profiles.find(p => p.memory_gb > 0)!;
    await select.selectOption({ label: optionTitle(chosen) });
    await shot(page, testInfo, 'profile-choice');
    // the form saves by itself; the registry and the sidebar follow
    await expect.poll(() => savedProfile(page)).toBe(chosen.name);
    await page.sidebar.openTab(PANEL_ID);
    await expect(page.locator(MODEL_LINE)).toHaveText(`Model: ${chosen.name} (from settings)`);
  });
});

test.describe('Model profile setting saved earlier', () => {
  test.use({
    mockSettings: { ...galata.DEFAULT_SETTINGS, [PLUGIN_ID]: { profile: 'gone-9b' } }
  });

  test('keeps a profile the server does not know as a valid choice', async ({ page }) => {
    await openAnalystSettings(page);
    const select = page.locator(PROFILE_SELECT);
    await expect(select.locator('option:checked')).toHaveText(
      'gone-9b (not a profile this server knows)'
    );
    await expect(page.locator('.jp-SettingsPanel .jp-errorIndicator')).toHaveCount(0);
    expect(await savedProfile(page)).toBe('gone-9b');
    await page.sidebar.openTab(PANEL_ID);
    await expect(page.locator(MODEL_LINE)).toHaveText(
      'Model: gone-9b (from settings) — not a profile this server knows'
    );
  });
});
