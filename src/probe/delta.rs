//! The `delta` probe: a Delta table's days from its `_delta_log`
//! (`formats::delta`), the table at `ROOT/<ns>.db/<table>` or where
//! `warehouse.tables` says.

use super::table_format::{Located, TableReader};
use super::{Partitions, TableLayout};
use crate::formats::storage::Storage;
use crate::formats::{FormatError, delta};

pub struct DeltaReader;

impl TableReader for DeltaReader {
    type Catalog = ();
    type Memory = delta::TableMemory;

    fn kind(&self) -> &'static str {
        "delta"
    }

    fn catalog(&self) -> Result<(), FormatError> {
        Ok(())
    }

    fn locate(&self, _: &(), _: &str, default: String) -> Result<Option<Located>, FormatError> {
        Ok(Some(Located {
            key: default.clone(),
            target: default,
        }))
    }

    fn read(
        &self,
        storage: &dyn Storage,
        located: &Located,
        layout: &TableLayout,
        memory: Option<&delta::TableMemory>,
    ) -> Result<(Partitions, delta::TableMemory), FormatError> {
        delta::read(storage, &located.target, layout, memory)
    }
}
