/**
 * One line about the run shown in the panel: state, step / budget, variable and question,
 * and what drives it (the policy).
 */

import { Widget } from '@lumino/widgets';

import { stateLabel } from './format';
import { IRunStatus, isActive } from './schema';

export class RunBar extends Widget {
  constructor() {
    super();
    this.addClass('jp-Analyst-runBar');
    this.node.setAttribute('data-testid', 'analyst-run-state');
    this.node.setAttribute('aria-live', 'polite');
    this.hide();
  }

  render(run: IRunStatus | null): void {
    if (!run) {
      this.node.textContent = '';
      delete this.node.dataset.state;
      this.hide();
      return;
    }
    const parts = [stateLabel(run.state)];
    parts.push(
      run.waiting && run.state === 'starting'
        ? `${run.waiting} (Stop cancels the run)`
        : `step ${run.step}/${run.max_steps}`
    );
    parts.push(`${run.variable}${run.question ? ` — “${run.question}”` : ''}`);
    if (run.policy) {
      parts.push(run.policy);
    }
    this.node.textContent = parts.join(' · ');
    this.node.dataset.state = run.state;
    this.toggleClass('jp-mod-active', isActive(run.state));
    this.show();
  }
}
