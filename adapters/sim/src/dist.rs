//! Random draws the simulation needs: exponential and lognormal times, from the core's seeded
//! generator, so that one seed fixes every draw of a run.

use croupier::Rng;

/// The shape of a backend's service times. Each backend sets the mean; the shape is shared.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServiceTime {
    /// Exponential: memoryless, the textbook M/M/c server.
    Exponential,
    /// Lognormal with this `sigma` (the standard deviation of the logarithm): a long right tail,
    /// closer to what real services show. `sigma = 1` gives a p99 about 5 x the mean.
    LogNormal {
        /// Standard deviation of `ln(time)`.
        sigma: f64,
    },
}

impl ServiceTime {
    /// One service time, in seconds, with mean `mean` seconds.
    pub fn sample(self, mean: f64, rng: &mut Rng) -> f64 {
        mean * self.unit_work(rng)
    }

    /// One draw of mean 1: a call's amount of work, which a backend turns into a service time by
    /// multiplying with its mean. Both shapes scale this way, so the simulator draws the work when
    /// a call is issued and every router sees the same calls for the same seed.
    pub fn unit_work(self, rng: &mut Rng) -> f64 {
        match self {
            ServiceTime::Exponential => exponential(1.0, rng),
            ServiceTime::LogNormal { sigma } => {
                // E[exp(mu + sigma Z)] = exp(mu + sigma^2 / 2): mu = -sigma^2 / 2 gives mean 1.
                (-sigma * sigma / 2.0 + sigma * standard_normal(rng)).exp()
            }
        }
    }
}

/// An exponential draw with mean `mean`, by inverting its distribution function.
pub(crate) fn exponential(mean: f64, rng: &mut Rng) -> f64 {
    // unit() is in [0, 1), so 1 - unit() is in (0, 1] and its logarithm is finite.
    -mean * (1.0 - rng.unit()).ln()
}

/// A standard normal draw (Box-Muller; the second value of each pair is not kept, so that a draw
/// depends on nothing but the generator's state).
pub(crate) fn standard_normal(rng: &mut Rng) -> f64 {
    let radius = (-2.0 * (1.0 - rng.unit()).ln()).sqrt();
    let angle = std::f64::consts::TAU * rng.unit();
    radius * angle.cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_variance(draws: &[f64]) -> (f64, f64) {
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, variance)
    }

    #[test]
    fn exponential_draws_have_the_asked_mean_and_variance() {
        let mut rng = Rng::new(11);
        let draws: Vec<f64> = (0..200_000).map(|_| exponential(0.01, &mut rng)).collect();
        let (mean, variance) = mean_and_variance(&draws);
        // Standard error of the mean: 0.01 / sqrt(200000) = 0.0000224, so 1% is 4.5 errors.
        assert!((mean - 0.01).abs() < 0.0001, "{mean}");
        assert!((variance.sqrt() - 0.01).abs() < 0.0003, "{variance}");
        assert!(draws.iter().all(|&x| x >= 0.0 && x.is_finite()));
    }

    #[test]
    fn lognormal_draws_have_the_asked_mean_and_shape() {
        let mut rng = Rng::new(12);
        let shape = ServiceTime::LogNormal { sigma: 0.5 };
        let draws: Vec<f64> = (0..200_000).map(|_| shape.sample(0.01, &mut rng)).collect();
        let (mean, _) = mean_and_variance(&draws);
        assert!((mean - 0.01).abs() < 0.0001, "{mean}");
        // The log of the draws is normal with standard deviation sigma.
        let logs: Vec<f64> = draws.iter().map(|x| x.ln()).collect();
        let (log_mean, log_variance) = mean_and_variance(&logs);
        assert!((log_variance.sqrt() - 0.5).abs() < 0.01, "{log_variance}");
        assert!(
            (log_mean - (0.01f64.ln() - 0.125)).abs() < 0.01,
            "{log_mean}"
        );
    }

    #[test]
    fn normal_draws_are_centred_with_unit_variance() {
        let mut rng = Rng::new(13);
        let draws: Vec<f64> = (0..200_000).map(|_| standard_normal(&mut rng)).collect();
        let (mean, variance) = mean_and_variance(&draws);
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((variance - 1.0).abs() < 0.02, "{variance}");
    }
}
