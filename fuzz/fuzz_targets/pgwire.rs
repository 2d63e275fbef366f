#![no_main]

// pgwire's decoder panics on some malformed messages (see
// sluice::pgwire::fuzz_frontend_messages), which the server survives as a
// closed connection: the target catches those, so the default hook (not
// libFuzzer's, which aborts at once) must be the one that runs. A panic
// anywhere else still fails the run.
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| sluice_tests::fuzz::pgwire(data)
);
