// The shared storage driver suite against the in-memory driver.
import { InMemoryDriver } from '../../src/storage/drivers/inmemory/index.js';
import { storageSuite } from '../storage-suite.js';

storageSuite('inmemory', async () => ({ driver: new InMemoryDriver(), cleanup: async () => {} }));
