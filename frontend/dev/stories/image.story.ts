// Image story: the vit fixture (a generated 32 × 32 px image, 4 × 4 patches, [CLS] and a register token),
// layer 0, the mean of all heads, from [CLS]: its planted attention lands on patch (1, 2) at step 100.
import {kindInfo} from '../../src/axes';
import {imageData, meanRows, type ImageData} from '../../src/views/image/data';
import {imageSpec, queryOf} from '../../src/views/image/spec';
import {fixtureRecord, type Story} from './story';

export const story: Story<ImageData> = {
  spec: imageSpec,
  run: 'vit',
  example: '0',
  kind: 'encoder',
  async data(source) {
    const x = await fixtureRecord(source, 'vit', '0', 'encoder');
    const info = kindInfo(x.header, 'encoder');
    const att = await source.attention(x.ref, 'encoder', 0);
    const q = queryOf(x, null);
    const rows = Array.from({length: att.heads}, (_, h) => att.head(h).slice(q * att.k, (q + 1) * att.k));
    return imageData({header: x.header, querySeq: info.query, query: q, row: meanRows(rows), what: `L0, mean of all ${att.heads} heads`});
  },
};
