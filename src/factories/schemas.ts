import { z } from 'zod';
import { countryCode, text } from '../http/schemas.js';

export const FACTORY_KINDS = ['fabrication', 'assembly', 'components', 'testing', 'logistics'] as const;

const timeZone = z
  .string()
  .max(64)
  .refine((tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }, 'must be an IANA time zone, e.g. Asia/Shanghai');

export const createFactoryBody = z.strictObject({
  name: text(200),
  kind: z.enum(FACTORY_KINDS),
  country: countryCode,
  timezone: timeZone.default('UTC'),
});

export const factorySchema = z.object({
  id: z.uuid(),
  name: z.string(),
  kind: z.enum(FACTORY_KINDS),
  country: z.string(),
  timezone: z.string(),
  createdAt: z.string(),
});

export const createApiKeyBody = z.strictObject({ label: text(100).optional() });

export const apiKeySchema = z.object({
  id: z.uuid(),
  factoryId: z.uuid(),
  label: z.string().nullable(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export const createdApiKeySchema = apiKeySchema.extend({
  key: z.string().describe('The key itself. Shown only in this response: store it now.'),
});

export type Factory = z.infer<typeof factorySchema>;
export type ApiKey = z.infer<typeof apiKeySchema>;
