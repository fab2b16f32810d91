//! What the tool knows of a warehouse table, whichever kind of warehouse
//! holds it: how it is partitioned (`TableLayout`) and its partitions with
//! their fingerprints (`Partitions`). Probes list them; the table formats
//! read them from metadata.

use std::collections::{BTreeMap, HashMap};

use crate::config::TableRef;
use crate::hash::Hash;
use crate::partition::{Day, DayFormat};

/// A table's partitions and their fingerprints.
pub type Partitions = BTreeMap<Day, Hash>;

/// How a table is partitioned: the column and the format of its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableLayout {
    pub column: String,
    pub format: DayFormat,
}

impl TableLayout {
    pub fn new(column: &str) -> TableLayout {
        TableLayout {
            column: column.to_string(),
            format: DayFormat::default(),
        }
    }

    /// `column=value`, as a folder name or a Hive partition spec.
    pub fn partition_name(&self, day: Day) -> String {
        format!("{}={}", self.column, self.format.format(day))
    }
}

/// Each table's layout; tables not named have the warehouse's.
#[derive(Clone, Debug)]
pub struct Layouts {
    pub default: TableLayout,
    pub tables: HashMap<String, TableLayout>,
}

impl Layouts {
    #[cfg(test)]
    pub fn uniform(column: &str) -> Layouts {
        Layouts {
            default: TableLayout::new(column),
            tables: HashMap::new(),
        }
    }

    /// The layout of `table` (as in configs, with or without a sub-partition).
    pub fn of(&self, table: &str) -> &TableLayout {
        self.tables
            .get(TableRef::split(table).0)
            .unwrap_or(&self.default)
    }
}
