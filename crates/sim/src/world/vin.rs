//! Vehicle identification numbers (ISO 3779 / 49 CFR 565): 17 characters from an alphabet
//! without `I`, `O` and `Q`, with a check digit in position 9. A [`Vin`] can only be built by
//! [`Vin::parse`] or [`Vin::generate`], so an invalid VIN cannot exist in the world.

use std::fmt;

use rand::Rng;

/// A valid VIN, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Vin(String);

/// Why a VIN was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VinError {
    /// Not 17 characters long.
    #[error("a VIN has 17 characters, this one has {0}")]
    Length(usize),
    /// A character outside the VIN alphabet (`I`, `O` and `Q` are never used).
    #[error("character {character:?} at position {position} is not allowed in a VIN")]
    Character {
        /// 1-based position of the character.
        position: usize,
        /// The character found.
        character: char,
    },
    /// Position 9 does not match the check digit computed from the other 16.
    #[error("check digit is {found:?} but the VIN's characters give {expected:?}")]
    CheckDigit {
        /// The check digit the other characters call for.
        expected: char,
        /// The character in position 9.
        found: char,
    },
}

/// Position weights of the check-digit sum; position 9 (the check digit) weighs 0.
const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// Characters a generator may put anywhere outside the WMI, year and check positions.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";

/// Model-year codes for 2010–2030 (the letters of the 30-year cycle; its digits stand for
/// 2001–2009 and 2031–2039, which the sim does not generate).
const YEAR_CODES: &[u8; 21] = b"ABCDEFGHJKLMNPRSTVWXY";

impl Vin {
    /// Reads a VIN, accepting lower case, and checks its alphabet and check digit.
    pub fn parse(text: &str) -> Result<Self, VinError> {
        let upper = text.trim().to_ascii_uppercase();
        let count = upper.chars().count();
        if count != 17 {
            return Err(VinError::Length(count));
        }
        for (index, character) in upper.chars().enumerate() {
            if transliterate(character).is_none() {
                return Err(VinError::Character {
                    position: index + 1,
                    character,
                });
            }
        }
        let expected = check_digit(upper.as_bytes());
        let found = char::from(upper.as_bytes()[8]);
        if expected != found {
            return Err(VinError::CheckDigit { expected, found });
        }
        Ok(Self(upper))
    }

    /// Draws a valid VIN for a maker's world manufacturer identifier (3 characters) and model
    /// year (clamped to 2010–2030); the serial part is random.
    pub fn generate(rng: &mut impl Rng, wmi: &str, year: u16) -> Self {
        let mut bytes = [b'0'; 17];
        for (slot, byte) in bytes.iter_mut().zip(wmi.bytes().take(3)) {
            *slot = byte.to_ascii_uppercase();
        }
        for slot in &mut bytes[3..8] {
            *slot = ALPHABET[rng.random_range(0..ALPHABET.len())];
        }
        bytes[9] = YEAR_CODES[usize::from(year.clamp(2010, 2030) - 2010)];
        bytes[10] = ALPHABET[rng.random_range(0..ALPHABET.len())];
        for slot in &mut bytes[11..] {
            *slot = b'0' + rng.random_range(0..10);
        }
        bytes[8] = check_digit(&bytes) as u8;
        Self(bytes.iter().map(|&byte| char::from(byte)).collect())
    }

    /// The VIN's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The model year encoded in position 10: letters read as 2010–2030, digits as 2001–2009.
    pub fn model_year(&self) -> Option<u16> {
        let code = self.0.as_bytes()[9];
        if let Some(index) = YEAR_CODES.iter().position(|&c| c == code) {
            return Some(2010 + index as u16);
        }
        code.is_ascii_digit()
            .then(|| 2000 + u16::from(code - b'0'))
            .filter(|&year| year > 2000)
    }

    /// The world manufacturer identifier (positions 1–3).
    pub fn wmi(&self) -> &str {
        &self.0[..3]
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value a character stands for in the check-digit sum; `None` outside the alphabet.
fn transliterate(character: char) -> Option<u32> {
    Some(match character {
        '0'..='9' => character.to_digit(10)?,
        'A' | 'J' => 1,
        'B' | 'K' | 'S' => 2,
        'C' | 'L' | 'T' => 3,
        'D' | 'M' | 'U' => 4,
        'E' | 'N' | 'V' => 5,
        'F' | 'W' => 6,
        'G' | 'P' | 'X' => 7,
        'H' | 'Y' => 8,
        'R' | 'Z' => 9,
        _ => return None,
    })
}

/// The check digit of 17 VIN bytes (position 9 is ignored): the weighted sum mod 11, `X` for 10.
fn check_digit(bytes: &[u8]) -> char {
    let sum: u32 = bytes
        .iter()
        .zip(WEIGHTS)
        .map(|(&byte, weight)| transliterate(char::from(byte)).unwrap_or(0) * weight)
        .sum();
    match sum % 11 {
        10 => 'X',
        digit => char::from_digit(digit, 10).unwrap_or('0'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn accepts_known_valid_vins() {
        for text in [
            "1M8GDM9AXKP042788",
            "11111111111111111",
            "1hgcm82633a004352",
        ] {
            let vin = Vin::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(vin.as_str(), text.to_ascii_uppercase());
        }
    }

    #[test]
    fn rejects_each_kind_of_mistake() {
        assert_eq!(Vin::parse("1M8GDM9AXKP04278"), Err(VinError::Length(16)));
        assert_eq!(
            Vin::parse("1M8GDM9AXKP04278O"),
            Err(VinError::Character {
                position: 17,
                character: 'O'
            })
        );
        assert_eq!(
            Vin::parse("1M8GDM9A1KP042788"),
            Err(VinError::CheckDigit {
                expected: 'X',
                found: '1'
            })
        );
    }

    #[test]
    fn generated_vins_are_valid_and_carry_their_year() {
        let mut rng = StdRng::seed_from_u64(3);
        for year in 2010..=2030 {
            let vin = Vin::generate(&mut rng, "1FT", year);
            assert_eq!(Vin::parse(vin.as_str()), Ok(vin.clone()));
            assert_eq!(vin.wmi(), "1FT");
            assert_eq!(vin.model_year(), Some(year), "{vin}");
        }
    }
}
