//! The standard library, compiled into the binary so that `std::resnet50`
//! works from any directory. The files live in `stdlib/` at the top of the
//! repository.

/// `(name shown in diagnostics, text)` of every standard-library file.
pub const FILES: &[(&str, &str)] = &[
    ("std/lenet.nn", include_str!("../stdlib/lenet.nn")),
    ("std/alexnet.nn", include_str!("../stdlib/alexnet.nn")),
    ("std/vgg.nn", include_str!("../stdlib/vgg.nn")),
    ("std/resnet.nn", include_str!("../stdlib/resnet.nn")),
    ("std/googlenet.nn", include_str!("../stdlib/googlenet.nn")),
    ("std/densenet.nn", include_str!("../stdlib/densenet.nn")),
    ("std/mobilenet.nn", include_str!("../stdlib/mobilenet.nn")),
];
