import { sql, type Kysely } from 'kysely';

// Frozen. An append to orders this instance keeps in memory is sent in one flight with its
// commit (src/events/kept-append.ts); its guard statement calls this to abort the transaction
// when the orders moved or a key was claimed before, and the append is redone the long way.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create function orderstream_expect(ok boolean, what text) returns boolean
    language plpgsql volatile as $$
    begin
      if ok is not true then
        raise exception 'orderstream: %', what using errcode = 'OS001';
      end if;
      return true;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists orderstream_expect(boolean, text)`.execute(db);
}
