// node-postgres through pg_doorman in transaction mode (connection settings from PG* variables).
// Named statements ({name, text, values}) are parsed once per connection and then only bound,
// so with more clients than backends every Bind lands on backends that never saw the Parse.
'use strict';
const { Client } = require('pg');

const CLIENTS = 8;

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function worker(n) {
  const c = new Client();
  await c.connect();
  try {
    for (let i = 0; i < 30; i++) {
      const r = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [n, i] });
      check(r.rows[0].v === n + i, `add ${n} ${i}`);
      const r2 = await c.query({ name: 'rep', text: "SELECT repeat('y', $1::int) AS v", values: [i % 4] });
      check(r2.rows[0].v.length === i % 4, 'repeat');
      if (i % 10 === 0) {
        await c.query('BEGIN');
        const r3 = await c.query({ name: 'add', text: 'SELECT $1::int + $2::int AS v', values: [1, 1] });
        check(r3.rows[0].v === 2, 'in transaction');
        await c.query('COMMIT');
      }
    }
    try {
      await c.query({ name: 'div', text: 'SELECT 1 / $1::int AS v', values: [0] });
      check(false, 'division by zero not reported');
    } catch (e) {
      check(e.code === '22012', `sqlstate ${e.code}`);
    }
    const r4 = await c.query({ name: 'div', text: 'SELECT 1 / $1::int AS v', values: [1] });
    check(r4.rows[0].v === 1, 'after error');
  } finally {
    await c.end();
  }
}

Promise.allSettled([...Array(CLIENTS).keys()].map(worker)).then((results) => {
  const failed = results.filter((r) => r.status === 'rejected');
  for (const f of failed) console.log(String(f.reason && f.reason.stack || f.reason));
  console.log(`node-postgres suite: ${results.length - failed.length} passed, ${failed.length} failed`);
  process.exit(failed.length ? 1 : 0);
});
