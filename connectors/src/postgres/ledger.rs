//! Exactly once across a crash for an output without a key: the ledger
//! `iotql_sink_batches (target, output, seq, xid)` records which
//! transaction committed each of the output's batches, in that same
//! transaction. A checkpoint records the number of the output's last
//! committed batch; a job that resumes from it deletes, in one transaction,
//! the rows of the batches committed after it before writing them again.
//!
//! The rows are found by `xmin`, the system column that holds the
//! transaction that inserted a row: PostgreSQL's counterpart of the SQLite
//! output's row ids. Every row carries it at no cost, so the user's table
//! keeps its own columns and readers see each row as soon as its batch
//! commits. A run without checkpoints (the REPL, `iotql test`) keeps no
//! ledger.

use std::collections::VecDeque;

use iotql_engine::checkpoint::KEEP;

use super::table::{Progress, StartError, qualified};
use super::{PostgresOutput, TableName};

/// The ledger's table, in the schema of the output's table.
const LEDGER_TABLE: &str = "iotql_sink_batches";

/// What a checkpoint's state of a PostgreSQL output starts with (then the
/// batch number, 8 bytes little-endian).
const STATE_TAG: &[u8] = b"PG1";

/// The statements of one output's ledger (parameters: target, output,
/// batch number).
#[derive(Debug)]
pub(super) struct Ledger {
    /// Records the running transaction as the one that committed batch $3.
    pub(super) record: String,
    /// Batches recorded after $3.
    count_after: String,
    /// Deletes the rows of the table that the batches after $3 inserted.
    delete_rows_after: String,
    /// Forgets the batches after $3 (they are undone).
    forget_after: String,
    /// Forgets the batches up to $3 (no checkpoint kept goes back there).
    forget_up_to: String,
}

impl Ledger {
    /// Creates the ledger's table when missing (beside `table`, whose
    /// quoted, qualified name is `quoted`).
    pub(super) fn create(
        client: &mut postgres::Client,
        table: &TableName,
        quoted: &str,
    ) -> Result<Ledger, postgres::Error> {
        let ledger = qualified(table.schema.as_deref(), LEDGER_TABLE);
        client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {ledger} (target text NOT NULL, output text NOT NULL, seq bigint NOT NULL, xid bigint NOT NULL, PRIMARY KEY (target, output, seq))"
        ))?;
        let this = "target = $1 AND output = $2";
        // `xmin` is the 32-bit transaction id, `txid_current()` the same
        // with its epoch above.
        Ok(Ledger {
            record: format!(
                "INSERT INTO {ledger} (target, output, seq, xid) VALUES ($1, $2, $3, txid_current())"
            ),
            count_after: format!("SELECT count(*) FROM {ledger} WHERE {this} AND seq > $3"),
            delete_rows_after: format!(
                "DELETE FROM {quoted} WHERE xmin::text::bigint IN (SELECT xid % 4294967296 FROM {ledger} WHERE {this} AND seq > $3)"
            ),
            forget_after: format!("DELETE FROM {ledger} WHERE {this} AND seq > $3"),
            forget_up_to: format!("DELETE FROM {ledger} WHERE {this} AND seq <= $3"),
        })
    }
}

/// A checkpoint's state: the number of the last batch committed.
pub(super) fn state(seq: i64) -> Vec<u8> {
    [STATE_TAG, &seq.to_le_bytes()].concat()
}

/// The batch number of a [`state`].
pub(super) fn batch_of(state: &[u8]) -> Result<i64, String> {
    state
        .strip_prefix(STATE_TAG)
        .and_then(|rest| rest.try_into().ok())
        .map(i64::from_le_bytes)
        .ok_or_else(|| {
            "the checkpoint's state of this output is not a PostgreSQL one (damaged, or the output was another connector)".to_string()
        })
}

/// Rolls the output's table back to batch `to`: deletes, in one
/// transaction, the rows of the batches committed after it, forgets those
/// batches and sets the output's batch number to `to`. Returns the rows
/// deleted. Refused when the ledger does not account for every batch after
/// `to` (a run without checkpoints wrote some): their rows could not be
/// told apart, and writing the checkpoint's rows again would double them.
pub(super) fn roll_back(
    client: &mut postgres::Client,
    progress: &Progress,
    ledger: &Ledger,
    output: &PostgresOutput,
    to: i64,
) -> Result<u64, StartError> {
    let this: [&(dyn postgres::types::ToSql + Sync); 3] = [&progress.target, &progress.output, &to];
    let mut tx = client.transaction()?;
    // Waits, too, for a transaction of the killed run that the server
    // has not ended yet.
    let done: i64 = tx.query_one(&progress.lock, &this[..2])?.get(0);
    let recorded: i64 = tx.query_one(&ledger.count_after, &this)?.get(0);
    if done < to || recorded != done - to {
        return Err(StartError::Refused(format!(
            "cannot roll table {} back to the checkpoint: it counts batch {to} of output `{}` as the last written, and iotql_sink_progress says {done}, of which {recorded} after the checkpoint are in {LEDGER_TABLE}; the table was written without checkpoints (the REPL, iotql test) or changed by hand since. Run with --fresh to start over from the beginning of the inputs (remove the rows already written first)",
            output.table, progress.output
        )));
    }
    let removed = tx.execute(&ledger.delete_rows_after, &this)?;
    tx.execute(&ledger.forget_after, &this)?;
    tx.execute(&progress.update, &this)?;
    tx.commit()?;
    Ok(removed)
}

/// The batch numbers of the checkpoints an output committed in this run,
/// to forget the ledger's batches that no checkpoint kept can go back to.
#[derive(Debug, Default)]
pub(super) struct Committed {
    /// The state returned by the last `checkpoint`, not committed yet.
    pending: Option<i64>,
    /// The newest [`KEEP`] committed, oldest first.
    kept: VecDeque<i64>,
}

impl Committed {
    pub(super) fn taken(&mut self, seq: i64) {
        self.pending = Some(seq);
    }

    /// The checkpoint taken last is durable: returns the batch number up to
    /// which the ledger may be forgotten, once this run has committed as
    /// many checkpoints as the store keeps (the oldest of them may be
    /// resumed from, when the newer ones are damaged).
    pub(super) fn committed(&mut self) -> Option<i64> {
        self.kept.push_back(self.pending.take()?);
        if self.kept.len() > KEEP {
            self.kept.pop_front();
        }
        (self.kept.len() == KEEP).then(|| self.kept[0])
    }
}

/// Forgets the ledger's batches up to `seq`.
pub(super) fn forget(
    client: &mut postgres::Client,
    progress: &Progress,
    ledger: &Ledger,
    seq: i64,
) -> Result<u64, postgres::Error> {
    client.execute(
        &ledger.forget_up_to,
        &[&progress.target, &progress.output, &seq],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_and_a_foreign_one_is_refused() {
        assert_eq!(batch_of(&state(42)), Ok(42));
        assert!(batch_of(b"R1\0\0\0\0\0\0\0\0").is_err());
        assert!(batch_of(b"PG1\0").is_err());
    }

    #[test]
    fn the_ledger_is_forgotten_up_to_the_oldest_checkpoint_kept() {
        assert_eq!(KEEP, 3, "the figures below are for three");
        let mut c = Committed::default();
        assert_eq!(c.committed(), None, "nothing taken");
        let mut forgotten = Vec::new();
        for seq in [3, 5, 9, 12, 12] {
            c.taken(seq);
            forgotten.push(c.committed());
        }
        assert_eq!(forgotten, [None, None, Some(3), Some(5), Some(9)]);
    }
}
