//! GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, in place.

/// In-place GELU (tanh approximation).
pub fn gelu_tanh(x: &mut [f32]) {
    for v in x {
        let u = 0.797_884_6_f32 * (*v + 0.044715 * *v * *v * *v);
        *v = 0.5 * *v * (1.0 + libm::tanhf(u));
    }
}
