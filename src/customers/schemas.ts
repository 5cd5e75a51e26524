import { z } from 'zod';
import { countryCode, text } from '../http/schemas.js';

export const createCustomerBody = z.strictObject({ name: text(200), country: countryCode });
export const createEngineerBody = z.strictObject({ name: text(200), email: z.email().max(320) });

export const customerSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  country: z.string(),
  createdAt: z.string(),
});
export const engineerSchema = z.object({
  id: z.uuid(),
  customerId: z.uuid(),
  name: z.string(),
  email: z.string(),
  createdAt: z.string(),
});

export type Customer = z.infer<typeof customerSchema>;
export type Engineer = z.infer<typeof engineerSchema>;
