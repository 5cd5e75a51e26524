// npm run token -- --role ops [--sub alice] [--customer-id <uuid>] [--ttl 3600]
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { loadOrCreateDevSecret } from './dev-secret.js';
import { mintToken } from './jwt.js';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'admin' },
    sub: { type: 'string' },
    'customer-id': { type: 'string' },
    ttl: { type: 'string', default: '86400' },
  },
});
const role = values.role as 'customer' | 'ops' | 'admin';
if (!['customer', 'ops', 'admin'].includes(role)) throw new Error('--role must be customer, ops or admin');
if (role === 'customer' && !values['customer-id']) throw new Error('--customer-id is required for --role customer');
const config = loadConfig();
if (config.JWT_PUBLIC_KEY) throw new Error('JWT_PUBLIC_KEY is set: tokens are minted by the holder of the private key');
const secret = config.JWT_SECRET ?? loadOrCreateDevSecret(config.DATA_DIR).secret;
process.stdout.write(
  `${await mintToken(secret, { sub: values.sub ?? `${role}-cli`, role, customerId: values['customer-id'] }, Number(values.ttl))}\n`,
);
