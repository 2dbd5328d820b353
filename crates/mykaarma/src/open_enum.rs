//! Open enums: myKaarma documents only part of each value list, so every enum here has
//! its known values plus `Other(String)`, which keeps an unknown value instead of failing.

/// Declares an open enum: the listed variants with their wire spellings, plus
/// `Other(String)` for anything else. The value is (de)serialized as its wire string, so an
/// unknown value survives a round trip unchanged.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this library does not know yet, kept exactly as received.
            Other(String),
        }

        impl $name {
            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(other) => other,
                }
            }

            /// True when the value is one this library knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match Self::from(value.as_str()) {
                    Self::Other(_) => Self::Other(value),
                    known => known,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(value))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    open_enum! {
        /// A test enum.
        pub enum Colour { Red = "RED", Green = "GREEN" }
    }

    #[test]
    fn known_and_unknown_values_round_trip() {
        assert_eq!(Colour::from("RED"), Colour::Red);
        assert_eq!(Colour::from("MAUVE"), Colour::Other("MAUVE".into()));
        let json = serde_json::to_string(&Colour::Other("MAUVE".into())).unwrap();
        assert_eq!(json, "\"MAUVE\"");
        let back: Colour = serde_json::from_str(&json).unwrap();
        assert!(!back.is_known());
        assert_eq!(back.as_str(), "MAUVE");
        assert_eq!(Colour::Green.to_string(), "GREEN");
    }

    #[test]
    fn a_non_string_is_an_error() {
        assert!(serde_json::from_str::<Colour>("3").is_err());
    }
}
