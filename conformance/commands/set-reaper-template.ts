/**
 * One setReaperTemplate: a template made of the job's header `a` (which
 * plain headers hold as `1`, so it renders the kv key `k1`), or removed.
 * Templates never render the job id here: generated ids differ between the
 * model and the store. Their enqueues are left to the examples, as the ids
 * a template's enqueue gets are the store's own and are not reported.
 */
import fc from 'fast-check';
import type { JobText, ReaperTemplate, TemplateEffects } from '../../core/queue-store.js';
import { maybe, queueArb } from './arbitraries.js';
import { both } from './world.js';
import type { StoreCommand, StoreWorld } from './world.js';

const fromHeader: JobText = ['k', { header: 'a' }];
const textArb: fc.Arbitrary<JobText> = fc.constantFrom<JobText>(fromHeader, ['k2'], ['k3']);

const effectsArb: fc.Arbitrary<TemplateEffects> = fc.array(textArb, { maxLength: 2 }).map((kvDeletes) => ({ kvDeletes }));

const templateArb: fc.Arbitrary<ReaperTemplate> = fc
  .record({
    precondition: maybe(fc.record({ key: textArb, equals: fc.constantFrom<JobText>(['\u0001'], ['\u0002']) }), 1),
    effects: maybe(effectsArb, 1),
    ifCancelRequested: maybe(effectsArb, 1),
  })
  .map(({ precondition, effects, ifCancelRequested }) => ({
    ...(precondition === undefined ? {} : { precondition }),
    ...(effects === undefined ? {} : { effects }),
    ...(ifCancelRequested === undefined ? {} : { ifCancelRequested }),
  }));

const showText = (text: JobText): string =>
  text.map((part) => (typeof part === 'string' ? JSON.stringify(part) : 'jobId' in part ? 'jobId' : `header(${part.header})`)).join('+');

export class SetReaperTemplateCommand implements StoreCommand {
  constructor(
    readonly queue: string,
    readonly template: ReaperTemplate | undefined,
  ) {}
  check = (): boolean => true;
  async run(world: StoreWorld): Promise<void> {
    await both(
      world,
      this.toString(),
      () => world.model.setReaperTemplate(this.queue, this.template),
      () => world.store.setReaperTemplate(this.queue, this.template),
      () => undefined,
    );
  }
  toString(): string {
    const t = this.template;
    if (t === undefined) return `setReaperTemplate(${this.queue}, undefined)`;
    const parts: string[] = [];
    if (t.precondition) parts.push(`if ${showText(t.precondition.key)}==${showText(t.precondition.equals)}`);
    if (t.effects) parts.push(`effects delete [${(t.effects.kvDeletes ?? []).map(showText).join(', ')}]`);
    if (t.ifCancelRequested) parts.push(`ifCancelRequested delete [${(t.ifCancelRequested.kvDeletes ?? []).map(showText).join(', ')}]`);
    return `setReaperTemplate(${this.queue}, {${parts.join(', ')}})`;
  }
}

/** Generated `SetReaperTemplateCommand`s. */
export const setReaperTemplateCommands: fc.Arbitrary<SetReaperTemplateCommand> = fc
  .tuple(queueArb, maybe(templateArb, 1))
  .map(([queue, template]) => new SetReaperTemplateCommand(queue, template));
