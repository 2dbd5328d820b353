//! myKaarma's date-times: any text through `DateTime::parse`, and any integer through
//! `DateTime::from_epoch_millis`. Nothing may panic; what parses keeps its original form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mykaarma::DateTime;
use mykaarma_fuzz::assert_datetime_round_trips;

fuzz_target!(|data: &[u8]| {
    if let Ok(millis) = <[u8; 8]>::try_from(&data[..data.len().min(8)]) {
        if let Ok(parsed) = DateTime::from_epoch_millis(i64::from_le_bytes(millis)) {
            assert_datetime_round_trips(&parsed.original(), &parsed);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = DateTime::parse(text) {
        assert_datetime_round_trips(text, &parsed);
    }
});
