pub use sluice_planner;
