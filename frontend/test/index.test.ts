import {describe, expect, it} from 'vitest';
import {moduleBase} from '../src/index';

describe('module base URL', () => {
  it('is the folder of the module TensorBoard imports, path prefix kept', () => {
    expect(moduleBase('http://h:6006/pre/fix/data/plugin/attention/index.js').toString()).toBe('http://h:6006/pre/fix/data/plugin/attention/');
    expect(new URL('./index', moduleBase('http://h/data/plugin/attention/index.js')).pathname).toBe('/data/plugin/attention/index');
  });
  it('goes up from static/ when the bundle is loaded as static/index.js', () => {
    expect(moduleBase('http://h/data/plugin/attention/static/index.js').toString()).toBe('http://h/data/plugin/attention/');
  });
});
