// Matrix story: GPT-2 causal layer 1, head 2 (a short record: the stored dense matrix is the finest level;
// the causal mask shows grey).
import type {Story} from './story';
import {fixtureRecord} from './story';
import {defaultSelection} from '../../src/state';
import type {MatrixData} from '../../src/views/matrix/data';
import {loadMatrixData, matrixSpec} from '../../src/views/matrix/spec';
import type {ViewHost} from '../../src/views/spec';

export const story: Story<MatrixData> = {
  spec: matrixSpec,
  run: 'gpt2',
  example: '0',
  kind: 'decoder',
  sel: {layer: 1, neuronHead: 2},
  async data(source) {
    const x = await fixtureRecord(source, 'gpt2', '0', 'decoder');
    const host = {source, sel: {...defaultSelection(), layer: 1, neuronHead: 2}} as unknown as ViewHost;
    return loadMatrixData(host, x, 1, 2);
  },
};
