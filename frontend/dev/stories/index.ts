// Every story, by view name (one per view in the registry; test/views.test.ts checks that none is missing).
import {headStory} from './head.story';
import {matrixStory} from './matrix.story';
import {modelStory} from './model.story';
import {neuronStory} from './neuron.story';
import {rolloutStory} from './rollout.story';
import type {Story} from './story';
import {trainingStory} from './training.story';

export const STORIES: Record<string, Story<unknown>> = {
  head: headStory as Story<unknown>,
  model: modelStory as Story<unknown>,
  neuron: neuronStory as Story<unknown>,
  matrix: matrixStory as Story<unknown>,
  training: trainingStory as Story<unknown>,
  rollout: rolloutStory as Story<unknown>,
};
