pub use sluice_runtime;
