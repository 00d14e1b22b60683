//! Arrow tables stored as Parquet, the column contracts that ports declare, and the text
//! forms (`dagrun show`) of a table.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::CacheError;

/// An in-memory Arrow table.
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Table {
        Table { schema, batches }
    }

    pub fn from_batch(batch: RecordBatch) -> Table {
        Table { schema: batch.schema(), batches: vec![batch] }
    }

    /// The first `n` rows (all of them when there are fewer).
    pub fn head(&self, n: usize) -> Table {
        let mut left = n;
        let mut batches = Vec::new();
        // At least one batch (perhaps empty) when there is one, so writers still see columns.
        for b in &self.batches {
            let take = left.min(b.num_rows());
            batches.push(b.slice(0, take));
            left -= take;
            if left == 0 {
                break;
            }
        }
        Table { schema: self.schema.clone(), batches }
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// All rows as one batch.
    pub fn concat(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        arrow_select_concat(&self.schema, &self.batches)
    }
}

fn arrow_select_concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    if batches.len() == 1 {
        return Ok(batches[0].clone());
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for i in 0..schema.fields().len() {
        let arrays: Vec<&dyn arrow_array::Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
        if arrays.is_empty() {
            columns.push(arrow_array::new_empty_array(schema.field(i).data_type()));
        } else {
            columns.push(arrow_select::concat::concat(&arrays)?);
        }
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes batches as one Parquet file (snappy-compressed; the Arrow schema is embedded).
pub fn write_parquet(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), CacheError> {
    let err = |why: String| CacheError::Table { path: path.to_path_buf(), why };
    let file = File::create(path).map_err(|e| CacheError::io(path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| err(e.to_string()))?;
    for b in batches {
        writer.write(b).map_err(|e| match e {
            parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
                Ok(io) => CacheError::io(path, *io),
                Err(other) => err(other.to_string()),
            },
            other => err(other.to_string()),
        })?;
    }
    writer.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Reads a whole Parquet file.
pub fn read_parquet(path: &Path) -> Result<Table, CacheError> {
    let err = |why: String| CacheError::Table { path: path.to_path_buf(), why };
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build().map_err(|e| err(e.to_string()))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| err(e.to_string()))?;
    Ok(Table { schema, batches })
}

/// Reads only the Arrow schema of a Parquet file.
pub fn read_parquet_schema(path: &Path) -> Result<SchemaRef, CacheError> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| CacheError::Table { path: path.to_path_buf(), why: e.to_string() })?;
    Ok(builder.schema().clone())
}

/// The type a port's contract requires of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int32,
    Int64,
    UInt32,
    UInt64,
    Float32,
    Float64,
    /// `Utf8` or `LargeUtf8`.
    Utf8,
    /// A list (variable or fixed size) whose items have the given type.
    List(&'static ColumnType),
    /// A fixed-size list of any length whose items have the given type.
    FixedList(&'static ColumnType),
    /// Anything.
    Any,
}

impl ColumnType {
    /// Whether an Arrow type satisfies this requirement.
    pub fn accepts(&self, dt: &DataType) -> bool {
        match (self, dt) {
            (ColumnType::Any, _) => true,
            (ColumnType::Boolean, DataType::Boolean) => true,
            (ColumnType::Int32, DataType::Int32) => true,
            (ColumnType::Int64, DataType::Int64) => true,
            (ColumnType::UInt32, DataType::UInt32) => true,
            (ColumnType::UInt64, DataType::UInt64) => true,
            (ColumnType::Float32, DataType::Float32) => true,
            (ColumnType::Float64, DataType::Float64) => true,
            (ColumnType::Utf8, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
            (ColumnType::List(item), DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                item.accepts(f.data_type())
            }
            (ColumnType::FixedList(item), DataType::FixedSizeList(f, _)) => item.accepts(f.data_type()),
            _ => false,
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnType::Boolean => write!(f, "bool"),
            ColumnType::Int32 => write!(f, "int32"),
            ColumnType::Int64 => write!(f, "int64"),
            ColumnType::UInt32 => write!(f, "uint32"),
            ColumnType::UInt64 => write!(f, "uint64"),
            ColumnType::Float32 => write!(f, "float32"),
            ColumnType::Float64 => write!(f, "float64"),
            ColumnType::Utf8 => write!(f, "string"),
            ColumnType::List(t) => write!(f, "list<{t}>"),
            ColumnType::FixedList(t) => write!(f, "fixed_list<{t}>"),
            ColumnType::Any => write!(f, "any"),
        }
    }
}

/// A required column.
#[derive(Clone, Copy, Debug)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// Checks that `schema` has every required column with an acceptable type; extra columns are
/// allowed. The error lists every problem.
pub fn check_columns(schema: &Schema, required: &[ColumnSpec]) -> Result<(), String> {
    let mut problems = Vec::new();
    for spec in required {
        match schema.field_with_name(spec.name) {
            Ok(field) if spec.ty.accepts(field.data_type()) => {}
            Ok(field) => problems.push(format!(
                "column `{}` is {}, expected {}",
                spec.name,
                field.data_type(),
                spec.ty
            )),
            Err(_) => problems.push(format!("column `{}` ({}) is missing", spec.name, spec.ty)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Renders the first `rows` rows as a text table.
pub fn format_preview(table: &Table, rows: usize) -> Result<String, arrow_schema::ArrowError> {
    // No rows asked: no table at all, not even its header.
    let head = if rows == 0 { Vec::new() } else { table.head(rows).batches };
    Ok(arrow_cast::pretty::pretty_format_batches(&head)?.to_string())
}

/// Writes the table as CSV with a header row.
pub fn write_csv(table: &Table, out: &mut dyn Write) -> Result<(), arrow_schema::ArrowError> {
    let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(out);
    for b in &table.batches {
        w.write(&flatten_nested(b)?)?;
    }
    Ok(())
}

/// CSV has no nested values: list and struct columns (embedding vectors, for one) become text
/// cells written as arrow displays them, `[0.1, -0.2, ...]`.
fn flatten_nested(b: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    let nested = |t: &arrow_schema::DataType| t.is_nested();
    if !b.schema().fields().iter().any(|f| nested(f.data_type())) {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<arrow_array::ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if nested(f.data_type()) {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
            let text: arrow_array::StringArray = (0..c.len()).map(|i| c.is_valid(i).then(|| fmt.value(i).to_string())).collect();
            fields.push(arrow_schema::Field::new(f.name(), arrow_schema::DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Writes the table as a JSON array of objects.
pub fn write_json(table: &Table, out: &mut dyn Write) -> Result<(), arrow_schema::ArrowError> {
    let mut w = arrow_json::ArrayWriter::new(out);
    let refs: Vec<&RecordBatch> = table.batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    Ok(())
}

/// A schema as `name: type` lines, for messages.
pub fn describe_schema(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds a schema reference from fields (a small convenience for node code).
pub fn schema(fields: Vec<arrow_schema::Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::Field;

    fn sample() -> Table {
        let schema = schema(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("score", DataType::Float64, true),
        ]);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Float64Array::from(vec![Some(0.5), None, Some(1.5)])),
            ],
        )
        .unwrap();
        Table::from_batch(batch)
    }

    #[test]
    fn parquet_round_trip_keeps_schema_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let t = sample();
        write_parquet(&path, &t.schema, &t.batches).unwrap();
        let back = read_parquet(&path).unwrap();
        assert_eq!(back.schema, t.schema);
        assert_eq!(back.concat().unwrap(), t.concat().unwrap());
        assert_eq!(read_parquet_schema(&path).unwrap(), t.schema);
    }

    #[test]
    fn garbage_is_not_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        std::fs::write(&path, b"not parquet at all").unwrap();
        assert!(matches!(read_parquet(&path), Err(CacheError::Table { .. })));
    }

    #[test]
    fn contracts_name_each_problem() {
        let t = sample();
        assert!(check_columns(&t.schema, &[ColumnSpec { name: "id", ty: ColumnType::Int64 }]).is_ok());
        let err = check_columns(
            &t.schema,
            &[
                ColumnSpec { name: "id", ty: ColumnType::Utf8 },
                ColumnSpec { name: "missing", ty: ColumnType::Float32 },
            ],
        )
        .unwrap_err();
        assert!(err.contains("column `id` is Int64, expected string"), "{err}");
        assert!(err.contains("column `missing` (float32) is missing"), "{err}");
        let list = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 8);
        assert!(ColumnType::FixedList(&ColumnType::Float32).accepts(&list));
        assert!(ColumnType::List(&ColumnType::Float32).accepts(&list));
        assert!(!ColumnType::FixedList(&ColumnType::Float64).accepts(&list));
    }

    #[test]
    fn text_forms() {
        let t = sample();
        let p = format_preview(&t, 2).unwrap();
        assert!(p.contains("| 1  | a    | 0.5   |"), "{p}");
        assert!(!p.contains("| c"), "{p}");
        let mut csv = Vec::new();
        write_csv(&t, &mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap().lines().next().unwrap(), "id,name,score");
        let mut json = Vec::new();
        write_json(&t, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[2]["name"], "c");
    }

    #[test]
    fn csv_writes_vectors_as_text_cells() {
        use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
        let mut list = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        list.values().append_slice(&[0.5, -1.0]);
        list.append(true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("vector", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 2), false),
        ]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(arrow_array::Int32Array::from(vec![7])), Arc::new(list.finish())]).unwrap();
        let mut csv = Vec::new();
        write_csv(&Table::from_batch(b), &mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "id,vector\n7,\"[0.5, -1.0]\"\n");
    }
}
