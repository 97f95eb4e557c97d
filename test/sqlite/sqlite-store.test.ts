/** SqliteStore: the shared store unit tests, each store on a fresh temp file. */
import { describeStoreUnitTests } from '../support/store-unit-tests.js';
import { openStore } from './helpers.js';

describeStoreUnitTests('SqliteStore', (options) => openStore(options));
