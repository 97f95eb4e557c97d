import { MemoryStore } from '../../adapters/memory/index.js';
import { describeStoreUnitTests } from '../support/store-unit-tests.js';

describeStoreUnitTests('MemoryStore', (options) => new MemoryStore(options));
