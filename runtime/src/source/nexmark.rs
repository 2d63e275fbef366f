//! The `nexmark` connector: the Nexmark benchmark's event generator (the
//! model of Beam's and Flink's `NexmarkGenerator`).
//!
//! One event sequence: event `i` is a person when `i % 50 == 0`, an auction
//! when `i % 50` is 1..=3, and a bid otherwise (1 : 3 : 46). Ids are dense
//! from 1000 in order of creation. Bids go to a hot auction (one of the
//! latest) half the time and otherwise to one of the last 100 auctions;
//! bidders and sellers are hot one time in four and otherwise among the last
//! 1000 people. Prices are log-uniform from $1 to $1 000 000 (in cents). Event
//! time advances by `1 / event_rate` seconds per event from `start`.
//!
//! Every event is a pure function of `(seed, i)`: each of the three streams
//! (`table = 'person' | 'auction' | 'bid'`) walks the same sequence and keeps
//! its own kind, so they agree with each other, and any batching gives the
//! same rows.

use std::sync::Arc;

use std::fmt::Write;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringBuilder, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;

use super::SourceContext;
use super::random::SplitMix64;
use crate::error::{Result, RuntimeError};

/// The largest batch the generator sends at once.
const MAX_BATCH_EVENTS: u64 = 8192;
const PROPORTION: u64 = 50;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_SELLER_RATIO: u64 = 4;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
const AUCTION_ID_LEAD: i64 = 10;
const PERSON_ID_LEAD: i64 = 10;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/googl/item.htm?query=1",
    "https://www.nexmark.com/fcbk/item.htm?query=1",
    "https://www.nexmark.com/bidu/item.htm?query=1",
    "https://www.nexmark.com/appl/item.htm?query=1",
];
const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
/// Padding for `extra` columns, sliced to a random length.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Which of the three Nexmark streams a connector produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "person" | "people" => Some(NexmarkTable::Person),
            "auction" | "auctions" => Some(NexmarkTable::Auction),
            "bid" | "bids" => Some(NexmarkTable::Bid),
            _ => None,
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            NexmarkTable::Person => {
                &["id", "name", "email_address", "credit_card", "city", "state", "date_time", "extra"]
            }
            NexmarkTable::Auction => &[
                "id",
                "item_name",
                "description",
                "initial_bid",
                "reserve",
                "date_time",
                "expires",
                "seller",
                "category",
                "extra",
            ],
            NexmarkTable::Bid => &["auction", "bidder", "price", "channel", "url", "date_time", "extra"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            NexmarkTable::Person => "person",
            NexmarkTable::Auction => "auction",
            NexmarkTable::Bid => "bid",
        }
    }

    /// Whether event `index` is of this kind.
    fn owns(self, index: u64) -> bool {
        match index % PROPORTION {
            0 => self == NexmarkTable::Person,
            1..=3 => self == NexmarkTable::Auction,
            _ => self == NexmarkTable::Bid,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkSpec {
    pub table: NexmarkTable,
    pub seed: u64,
    /// Events (of all three kinds) per second of event time, and of
    /// wall-clock time when `realtime`.
    pub event_rate: f64,
    /// Events in the whole sequence; `None` runs forever.
    pub events: Option<u64>,
    pub realtime: bool,
    /// Event time of event 0, nanoseconds since the epoch.
    pub start: i64,
}

/// A column of one kind's rows, built as they are generated.
enum Column {
    Int(Vec<i64>),
    Time(Vec<i64>),
    /// Strings are written straight into the array's buffers.
    Text(StringBuilder),
}

impl NexmarkSpec {
    pub fn validate(&self, schema: &SchemaRef) -> Result<()> {
        let columns = self.table.columns();
        for field in schema.fields() {
            if !columns.contains(&field.name().as_str()) {
                return Err(RuntimeError::user(format!(
                    "the nexmark {} stream has no column {:?} (it has {})",
                    self.table.name(),
                    field.name(),
                    columns.join(", ")
                )));
            }
        }
        if !(self.event_rate > 0.0 && self.event_rate.is_finite()) {
            return Err(RuntimeError::user("nexmark event_rate must be a positive number of events per second"));
        }
        Ok(())
    }

    fn time_of(&self, index: u64) -> i64 {
        // `as` from f64 saturates; the sum must too (a user-given start).
        self.start.saturating_add((index as f64 * 1e9 / self.event_rate) as i64)
    }

    /// This stream's rows among events `first..first + count`.
    pub fn batch(&self, schema: &SchemaRef, first: u64, count: u64) -> Result<RecordBatch> {
        let names: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
        let mut columns: Vec<Column> = names
            .iter()
            .map(|name| match *name {
                "date_time" | "expires" => Column::Time(Vec::new()),
                "name" | "email_address" | "credit_card" | "city" | "state" | "extra" | "item_name" | "description"
                | "channel" | "url" => Column::Text(StringBuilder::with_capacity(count as usize, count as usize * 32)),
                _ => Column::Int(Vec::new()),
            })
            .collect();
        for index in (first..first + count).filter(|index| self.table.owns(*index)) {
            let mut random = SplitMix64::for_row(self.seed, index);
            let time = self.time_of(index);
            match self.table {
                NexmarkTable::Person => self.person(index, time, &mut random, &names, &mut columns),
                NexmarkTable::Auction => self.auction(index, time, &mut random, &names, &mut columns),
                NexmarkTable::Bid => self.bid(index, time, &mut random, &names, &mut columns),
            }
        }
        let arrays = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                let natural: ArrayRef = match column {
                    Column::Int(values) => Arc::new(Int64Array::from(values)),
                    Column::Time(values) => Arc::new(TimestampNanosecondArray::from(values)),
                    Column::Text(mut values) => Arc::new(values.finish()),
                };
                Ok(if natural.data_type() == field.data_type() { natural } else { cast(&natural, field.data_type())? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }

    fn person(&self, index: u64, time: i64, random: &mut SplitMix64, names: &[&str], columns: &mut [Column]) {
        let id = FIRST_PERSON_ID + persons_before(index) as i64;
        let name = format!("{} {}", pick(random, &FIRST_NAMES), pick(random, &LAST_NAMES));
        let state = pick(random, &US_STATES);
        let city = pick(random, &US_CITIES);
        for (name_of_column, column) in names.iter().zip(columns.iter_mut()) {
            match (*name_of_column, column) {
                ("id", Column::Int(values)) => values.push(id),
                ("name", Column::Text(values)) => values.append_value(&name),
                ("email_address", Column::Text(values)) => {
                    values.append_value(format!("{}@{}.com", letters(random, 7), letters(random, 5)))
                }
                ("credit_card", Column::Text(values)) => values.append_value(format!(
                    "{:04} {:04} {:04} {:04}",
                    random.below(10_000),
                    random.below(10_000),
                    random.below(10_000),
                    random.below(10_000)
                )),
                ("city", Column::Text(values)) => values.append_value(city),
                ("state", Column::Text(values)) => values.append_value(state),
                ("date_time", Column::Time(values)) => values.push(time),
                ("extra", Column::Text(values)) => values.append_value(extra(random, 40)),
                _ => {}
            }
        }
    }

    fn auction(&self, index: u64, time: i64, random: &mut SplitMix64, names: &[&str], columns: &mut [Column]) {
        let id = FIRST_AUCTION_ID + auctions_before(index) as i64;
        let initial_bid = price(random);
        let reserve = initial_bid + price(random);
        let last_person = persons_before(index).saturating_sub(1) as i64;
        let seller = FIRST_PERSON_ID
            + if random.below(HOT_SELLER_RATIO) > 0 {
                (last_person / HOT_SELLER_RATIO as i64) * HOT_SELLER_RATIO as i64
            } else {
                next_person(last_person, random)
            };
        let category = FIRST_CATEGORY_ID + random.below(NUM_CATEGORIES) as i64;
        // Auctions last a few seconds to a couple of minutes of event time.
        let expires = time.saturating_add((2_000 + random.below(118_000)) as i64 * 1_000_000);
        for (name, column) in names.iter().zip(columns.iter_mut()) {
            match (*name, column) {
                ("id", Column::Int(values)) => values.push(id),
                ("item_name", Column::Text(values)) => values.append_value(letters(random, 12)),
                ("description", Column::Text(values)) => values.append_value(extra(random, 60)),
                ("initial_bid", Column::Int(values)) => values.push(initial_bid),
                ("reserve", Column::Int(values)) => values.push(reserve),
                ("date_time", Column::Time(values)) => values.push(time),
                ("expires", Column::Time(values)) => values.push(expires),
                ("seller", Column::Int(values)) => values.push(seller),
                ("category", Column::Int(values)) => values.push(category),
                ("extra", Column::Text(values)) => values.append_value(extra(random, 40)),
                _ => {}
            }
        }
    }

    fn bid(&self, index: u64, time: i64, random: &mut SplitMix64, names: &[&str], columns: &mut [Column]) {
        let last_auction = auctions_before(index).saturating_sub(1) as i64;
        let auction = FIRST_AUCTION_ID
            + if random.below(HOT_AUCTION_RATIO) > 0 {
                (last_auction / HOT_AUCTION_RATIO as i64) * HOT_AUCTION_RATIO as i64
            } else {
                let low = (last_auction - NUM_IN_FLIGHT_AUCTIONS).max(0);
                low + random.below((last_auction - low + 1 + AUCTION_ID_LEAD) as u64) as i64
            };
        let last_person = persons_before(index).saturating_sub(1) as i64;
        let bidder = FIRST_PERSON_ID
            + if random.below(HOT_BIDDER_RATIO) > 0 {
                (last_person / HOT_BIDDER_RATIO as i64) * HOT_BIDDER_RATIO as i64 + 1
            } else {
                next_person(last_person, random)
            };
        let bid_price = price(random);
        // A hot channel, or channel n with a URL path of 5 letters.
        let channel = if random.below(2) > 0 {
            Err(random.below(HOT_CHANNELS.len() as u64) as usize)
        } else {
            Ok((random.below(10_000), letter_bytes::<5>(random)))
        };
        for (name, column) in names.iter().zip(columns.iter_mut()) {
            match (*name, column) {
                ("auction", Column::Int(values)) => values.push(auction),
                ("bidder", Column::Int(values)) => values.push(bidder),
                ("price", Column::Int(values)) => values.push(bid_price),
                ("channel", Column::Text(values)) => match channel {
                    Err(hot) => values.append_value(HOT_CHANNELS[hot]),
                    Ok((number, _)) => {
                        let _ = write!(values, "channel-{number}");
                        values.append_value("");
                    }
                },
                ("url", Column::Text(values)) => match &channel {
                    Err(hot) => values.append_value(HOT_URLS[*hot]),
                    Ok((number, path)) => {
                        let path = std::str::from_utf8(path).unwrap_or_default();
                        let _ = write!(values, "https://www.nexmark.com/{path}/item.htm?query=1&channel_id={number}");
                        values.append_value("");
                    }
                },
                ("date_time", Column::Time(values)) => values.push(time),
                ("extra", Column::Text(values)) => values.append_value(extra(random, 20)),
                _ => {}
            }
        }
    }
}

/// People created before event `index`.
fn persons_before(index: u64) -> u64 {
    index / PROPORTION + u64::from(!index.is_multiple_of(PROPORTION))
}

/// Auctions created before event `index`.
fn auctions_before(index: u64) -> u64 {
    index / PROPORTION * 3 + (index % PROPORTION).saturating_sub(1).min(3)
}

/// One of the recently active people (or a few not yet created, as in Nexmark).
fn next_person(last_person: i64, random: &mut SplitMix64) -> i64 {
    let people = last_person + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + random.below((active + PERSON_ID_LEAD) as u64) as i64
}

/// Log-uniform between $1 and $1 000 000, in cents (Nexmark's `priceForNewBid`).
fn price(random: &mut SplitMix64) -> i64 {
    (10f64.powf(random.next_f64() * 6.0) * 100.0).round() as i64
}

fn pick<'a>(random: &mut SplitMix64, choices: &[&'a str]) -> &'a str {
    choices[random.below(choices.len() as u64) as usize]
}

fn letters(random: &mut SplitMix64, length: usize) -> String {
    (0..length).map(|_| (b'a' + random.below(26) as u8) as char).collect()
}

/// [`letters`] without allocating: `N` lowercase ASCII letters.
fn letter_bytes<const N: usize>(random: &mut SplitMix64) -> [u8; N] {
    std::array::from_fn(|_| b'a' + random.below(26) as u8)
}

fn extra(random: &mut SplitMix64, average: u64) -> &'static str {
    let length = random.below(average * 2) as usize;
    let start = random.below((PADDING.len() - length.min(PADDING.len())) as u64 + 1) as usize;
    &PADDING[start..start + length.min(PADDING.len() - start)]
}

pub async fn run(spec: &NexmarkSpec, schema: SchemaRef, context: SourceContext) {
    let batch =
        |first, count, picked: super::Picked<'_>| super::pick_rows(spec.batch(&schema, first, count)?, first, picked);
    let schedule = super::Steady(spec.event_rate);
    super::run_numbered(spec.events, &schedule, spec.realtime, MAX_BATCH_EVENTS, context, batch).await
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

    use super::*;

    fn spec(table: NexmarkTable) -> NexmarkSpec {
        NexmarkSpec { table, seed: 0, event_rate: 1000.0, events: Some(5000), realtime: false, start: 0 }
    }

    fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(
            columns.iter().map(|(name, data_type)| Field::new(*name, data_type.clone(), false)).collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn one_person_three_auctions_and_46_bids_per_50_events() {
        let ids = schema(&[("date_time", DataType::Timestamp(TimeUnit::Nanosecond, None))]);
        let count = |table| spec(table).batch(&ids, 0, 5000).unwrap().num_rows();
        assert_eq!(
            (count(NexmarkTable::Person), count(NexmarkTable::Auction), count(NexmarkTable::Bid)),
            (100, 300, 4600)
        );
    }

    #[test]
    fn bids_refer_to_auctions_and_people_that_exist_or_are_about_to() {
        let bid = spec(NexmarkTable::Bid);
        let rows = bid
            .batch(
                &schema(&[("auction", DataType::Int64), ("bidder", DataType::Int64), ("price", DataType::Int64)]),
                0,
                5000,
            )
            .unwrap();
        let auctions = rows.column(0).as_primitive::<Int64Type>();
        let bidders = rows.column(1).as_primitive::<Int64Type>();
        let prices = rows.column(2).as_primitive::<Int64Type>();
        assert!(auctions.values().iter().all(|auction| (1000..1000 + 300 + AUCTION_ID_LEAD).contains(auction)));
        assert!(bidders.values().iter().all(|bidder| (1000..1000 + 100 + PERSON_ID_LEAD).contains(bidder)));
        assert!(prices.values().iter().all(|price| (100..=100_000_000).contains(price)));
        // Half the bids go to the hot auction of their time.
        let hot = (0..rows.num_rows()).filter(|row| auctions.value(*row) % 2 == 0).count();
        assert!(hot > rows.num_rows() / 2, "{hot}");
    }

    #[test]
    fn the_same_rows_whatever_the_batching() {
        let bid = spec(NexmarkTable::Bid);
        let columns = schema(&[("auction", DataType::Int64), ("channel", DataType::Utf8), ("extra", DataType::Utf8)]);
        let whole = bid.batch(&columns, 0, 500).unwrap();
        let parts = [bid.batch(&columns, 0, 123).unwrap(), bid.batch(&columns, 123, 377).unwrap()];
        let joined = datafusion::arrow::compute::concat_batches(&columns, &parts).unwrap();
        assert_eq!(whole, joined);
    }

    #[test]
    fn a_start_near_i64_max_saturates_event_times() {
        let times = schema(&[
            ("date_time", DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ("expires", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ]);
        let spec = NexmarkSpec { start: i64::MAX - 1_000, event_rate: 1e-9, ..spec(NexmarkTable::Auction) };
        assert!(spec.batch(&times, 0, 200).unwrap().num_rows() > 0);
        let spec = NexmarkSpec { start: i64::MAX - 1_000, event_rate: 1.0, ..spec };
        assert!(spec.batch(&times, u64::MAX - 200, 200).unwrap().num_rows() > 0);
    }
}
