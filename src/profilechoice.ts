/**
 * The "Model profile" setting as a choice of the server's profiles.
 *
 * schema/plugin.json keeps `profile` a free string: the profiles live on the server
 * (`GET profiles`), which the schema cannot know. A `fetch` transform of the setting
 * registry (index.ts) swaps in this choice, so the form-based Settings Editor shows a
 * drop-down that names each profile with its memory estimate instead of a name to guess.
 * Pure (no DOM, no JupyterLab runtime imports), so node alone can test it.
 */

import type { ISettingRegistry } from '@jupyterlab/settingregistry';

import type { IProfileInfo, IProfilesReply } from './schema';

/** One choice; JupyterLab's form editor (rjsf) renders `oneOf` consts as a select. */
type ProfileOption = { type: 'string'; const: string; title: string };

/** The memory a profile needs where its model runs, or what stands in for it. */
export function memoryNote(profile: IProfileInfo): string {
  if (profile.memory_gb > 0) {
    return `≈ ${profile.memory_gb.toFixed(1)} GB`;
  }
  return profile.kind === 'openai' ? 'served elsewhere' : 'no model to load';
}

/**
 * The `profile` property of the settings schema: a choice of the server's profiles, plus
 * "" (the server's default) and `current` when the server does not know it, so settings
 * saved earlier stay valid. Without a reply it stays the free-text `base`.
 */
export function profileSchema(
  base: ISettingRegistry.IProperty,
  reply: IProfilesReply | null,
  current: string
): ISettingRegistry.IProperty {
  // `base` may come from an earlier transform (a replayed load): start from the plain string
  const { oneOf: _oneOf, enum: _enum, ...plain } = base;
  if (!reply || !Array.isArray(reply.profiles)) {
    return plain;
  }
  const options: ProfileOption[] = [
    {
      type: 'string',
      const: '',
      title: reply.default ? `Server default (${reply.default})` : 'Server default'
    }
  ];
  const add = (name: string, title: string) => {
    // oneOf needs exactly one match: a name listed twice would make it invalid
    if (!options.some(option => option.const === name)) {
      options.push({ type: 'string', const: name, title });
    }
  };
  for (const profile of reply.profiles) {
    if (profile.name) {
      // name and memory only: the descriptions are sentences, and a select as wide as its
      // longest title would overflow the Settings Editor's form
      add(profile.name, `${profile.name} (${memoryNote(profile)})`);
    }
  }
  if (current) {
    add(current, `${current} (not a profile this server knows)`);
  }
  return { ...plain, type: 'string', oneOf: options };
}

/**
 * The profile saved in the user settings of a fetched plugin: the server's parsed
 * `settings` (the raw text is JSON5, which only the registry parses), else ''.
 */
export function savedProfile(plugin: ISettingRegistry.IPlugin): string {
  const settings = plugin.settings;
  if (settings && typeof settings === 'object' && !Array.isArray(settings)) {
    const profile = settings.profile;
    return typeof profile === 'string' ? profile : '';
  }
  return '';
}

/**
 * The setting registry's `fetch` transform: `plugin` with the profile choice in a copy of
 * its schema. Never throws, since a failed transform would fail the settings load.
 */
export function withProfileChoice(
  plugin: ISettingRegistry.IPlugin,
  reply: IProfilesReply | null
): ISettingRegistry.IPlugin {
  try {
    const base = plugin.schema.properties?.profile;
    if (!base) {
      return plugin;
    }
    const schema: ISettingRegistry.ISchema = JSON.parse(JSON.stringify(plugin.schema));
    schema.properties!.profile = profileSchema(base, reply, savedProfile(plugin));
    return { ...plugin, schema };
  } catch (reason) {
    console.warn('jupyter-analyst: the profile setting stays free text', reason);
    return plugin;
  }
}
