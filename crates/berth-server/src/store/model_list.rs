//! The SQL of a model listing ([`ModelFilter`]) for both backends: they differ only in how a
//! parameter is written and how a JSON object column is searched.

use super::ModelFilter;

/// Which backend's SQL to write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Parameter number `n` (1-based).
    fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}::TEXT"),
        }
    }

    /// ` AND` the JSON object in `m.<column>` has the key in parameter `key` (with the value in
    /// parameter `value`, when given).
    fn json_condition(self, column: &str, key: usize, value: Option<usize>) -> String {
        let key = self.param(key);
        let value = value.map(|v| self.param(v));
        match (self, value) {
            (Dialect::Sqlite, None) => {
                format!(" AND EXISTS (SELECT 1 FROM json_each(m.{column}) j WHERE j.key = {key})")
            }
            (Dialect::Sqlite, Some(value)) => format!(
                " AND EXISTS (SELECT 1 FROM json_each(m.{column}) j WHERE j.key = {key} AND j.value = {value})"
            ),
            (Dialect::Postgres, None) => format!(" AND (m.{column}::jsonb ? {key})"),
            (Dialect::Postgres, Some(value)) => {
                format!(" AND (m.{column}::jsonb ->> {key}) = {value}")
            }
        }
    }
}

/// The statement selecting `columns` of the models `filter` matches, newest first, and its
/// arguments in order.
pub(crate) fn query(
    filter: &ModelFilter,
    columns: &str,
    dialect: Dialect,
) -> (String, Vec<String>) {
    let mut sql = String::from("FROM models m WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    for (column, value) in [("name", &filter.name), ("framework", &filter.framework)] {
        if let Some(value) = value {
            args.push(value.clone());
            sql.push_str(&format!(" AND m.{column} = {}", dialect.param(args.len())));
        }
    }
    for (column, filters) in [("tags", &filter.tags), ("properties", &filter.properties)] {
        for (key, value) in filters {
            args.push(key.clone());
            let key_arg = args.len();
            let value_arg = value.as_ref().map(|value| {
                args.push(value.clone());
                args.len()
            });
            sql.push_str(&dialect.json_condition(column, key_arg, value_arg));
        }
    }
    let query = if filter.latest {
        format!(
            "SELECT {columns} FROM (SELECT m.*, row_number() OVER \
             (PARTITION BY m.name ORDER BY m.version DESC) AS newest {sql}) m \
             WHERE m.newest = 1 ORDER BY m.id DESC"
        )
    } else {
        format!("SELECT {columns} {sql} ORDER BY m.id DESC")
    };
    (query, args)
}
