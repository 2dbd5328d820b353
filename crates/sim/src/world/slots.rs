//! Appointment slots: a department's day is cut into equal slots between opening and closing,
//! and a slot ends one second before the next one starts (`08:00:00`–`08:29:59`), as
//! myKaarma's update page requires of `appointmentEndDateTime`.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde::Serialize;

/// How a department's days are cut into slots, and how many appointments one slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotPlan {
    /// When the first slot of the day starts.
    pub opens: NaiveTime,
    /// When the service lane closes; no slot starts at or after this time.
    pub closes: NaiveTime,
    /// Length of a slot, in minutes.
    pub slot_minutes: u32,
    /// Appointments one slot can hold (the department's capacity planning).
    pub capacity: u32,
}

/// One bookable slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Slot {
    /// First second of the slot.
    pub start: NaiveDateTime,
    /// Last second of the slot: the next slot's start minus one second.
    pub end: NaiveDateTime,
}

impl Default for SlotPlan {
    /// 07:00 to 18:00 in 30-minute slots, four appointments a slot.
    fn default() -> Self {
        Self {
            opens: NaiveTime::from_hms_opt(7, 0, 0).unwrap_or_default(),
            closes: NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
            slot_minutes: 30,
            capacity: 4,
        }
    }
}

impl SlotPlan {
    fn length(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.slot_minutes.max(1)))
    }

    /// Every slot of `date`, in order.
    pub fn slots_on(&self, date: NaiveDate) -> Vec<Slot> {
        let mut slots = Vec::new();
        let closes = date.and_time(self.closes);
        let mut start = date.and_time(self.opens);
        while start < closes {
            let next = start + self.length();
            slots.push(Slot {
                start,
                end: next - TimeDelta::seconds(1),
            });
            start = next;
        }
        slots
    }

    /// The slot that starts exactly at `start`, if there is one; `None` for a time that is not
    /// a slot boundary or lies outside opening hours (myKaarma's `NO_TIME_INTERVAL_EXISTS`).
    pub fn slot_starting_at(&self, start: NaiveDateTime) -> Option<Slot> {
        self.slots_on(start.date())
            .into_iter()
            .find(|slot| slot.start == start)
    }

    /// How many slots a day has.
    pub fn slots_per_day(&self) -> usize {
        self.slots_on(NaiveDate::default()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn a_slot_ends_one_second_before_the_next_starts() {
        let plan = SlotPlan::default();
        let date = NaiveDate::from_ymd_opt(2025, 1, 20).unwrap();
        let slots = plan.slots_on(date);
        assert_eq!(slots.len(), 22);
        assert_eq!(plan.slots_per_day(), 22);
        assert_eq!(slots[0].start, at("2025-01-20T07:00:00"));
        assert_eq!(slots[0].end, at("2025-01-20T07:29:59"));
        for pair in slots.windows(2) {
            assert_eq!(pair[0].end + TimeDelta::seconds(1), pair[1].start);
        }
        assert_eq!(slots[21].end, at("2025-01-20T17:59:59"));
    }

    #[test]
    fn only_slot_boundaries_within_opening_hours_are_slots() {
        let plan = SlotPlan::default();
        assert!(plan.slot_starting_at(at("2025-01-20T08:30:00")).is_some());
        assert!(plan.slot_starting_at(at("2025-01-20T08:15:00")).is_none());
        assert!(plan.slot_starting_at(at("2025-01-20T06:30:00")).is_none());
        assert!(plan.slot_starting_at(at("2025-01-20T18:00:00")).is_none());
    }
}
