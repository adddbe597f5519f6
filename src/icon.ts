import { LabIcon } from '@jupyterlab/ui-components';

import analystSvg from '../style/icons/analyst.svg';

/** The sidebar tab's icon: a bar chart with a spark. */
export const analystIcon = new LabIcon({
  name: 'jupyter-analyst:analyst',
  svgstr: analystSvg
});
