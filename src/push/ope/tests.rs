//! Closed-form answers, guards, coverage on simulated logs, and properties of the estimators.

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A context-free record.
fn rec(action: usize, reward: f64, propensity: f64) -> Record<()> {
    Record { context: (), action, reward, propensity }
}

fn uniform(n: usize) -> impl Fn(&()) -> Vec<f64> {
    move |_| vec![1.0 / n as f64; n]
}

fn always(action: usize, n: usize) -> impl Fn(&()) -> Vec<f64> {
    move |_| (0..n).map(|a| if a == action { 1.0 } else { 0.0 }).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

/// Six records on a uniform log over 3 actions; actions 0, 1, 2, 0, 1, 0 with rewards
/// 1, 0, 1, 0, 1, 1.
fn six() -> Vec<Record<()>> {
    [(0, 1.0), (1, 0.0), (2, 1.0), (0, 0.0), (1, 1.0), (0, 1.0)].iter().map(|&(a, r)| rec(a, r, 1.0 / 3.0)).collect()
}

#[test]
fn when_the_target_is_the_logging_policy_ips_and_snips_equal_the_mean_reward_exactly() {
    // A non-uniform logging policy over 3 actions, and the target that is that same policy.
    let mu = [0.5, 0.3, 0.2];
    let log: Vec<_> = [(0, 1.0), (0, 0.0), (1, 1.0), (2, 0.0), (2, 1.0), (0, 1.0), (1, 0.0)]
        .iter()
        .map(|&(a, r)| rec(a, r, mu[a]))
        .collect();
    let ev = Evaluation::new(&log, &|_: &()| mu.to_vec()).unwrap();
    let rewards: Vec<f64> = log.iter().map(|r| r.reward).collect();
    let mean = observed_mean(&rewards).unwrap();
    assert_eq!(ev.estimate(Estimator::Ips).unwrap(), mean);
    assert_eq!(ev.estimate(Estimator::Snips).unwrap().value, mean.value);
    let d = ev.diagnostics();
    assert_eq!((d.ess, d.zero_target, d.mean_weight, d.mean_weight_std_error, d.max_weight), (7.0, 0, 1.0, 0.0, 1.0));
}

#[test]
fn a_deterministic_target_on_a_uniform_log_gives_the_hand_computed_numbers() {
    let ev = Evaluation::new(&six(), &always(0, 3)).unwrap();
    // Weights 3 on the three action-0 records (rewards 1, 0, 1), 0 elsewhere.
    let ips = ev.estimate(Estimator::Ips).unwrap();
    assert!(close(ips.value, 6.0 / 6.0));
    // Terms 3, 0, 0, 0, 0, 3: mean 1, squared deviations sum to 12, variance 12 / 5.
    assert!(close(ips.std_error, (12.0 / 5.0 / 6.0_f64).sqrt()), "{}", ips.std_error);
    assert!(close(ips.interval.low, 1.0 - Z95 * 0.4_f64.sqrt()));
    assert!(close(ips.interval.high, 1.0 + Z95 * 0.4_f64.sqrt()));
    let snips = ev.estimate(Estimator::Snips).unwrap();
    assert!(close(snips.value, 2.0 / 3.0));
    // Influences w (r − 2/3) / 1.5: 2/3, −4/3, 2/3 and zeros; Σ² = 8/3, variance 8/15.
    assert!(close(snips.std_error, (8.0 / 15.0 / 6.0_f64).sqrt()), "{}", snips.std_error);
    let d = ev.diagnostics();
    assert!(close(d.ess, 81.0 / 27.0));
    assert_eq!((d.zero_target, d.weighted_rewards, d.records), (3, 2, 6));
    assert!(close(d.mean_weight, 1.5));
    // Weights 3, 0, 0, 3, 0, 3: squared deviations 6 × 2.25, variance 13.5 / 5.
    assert!(close(d.mean_weight_std_error, (13.5 / 5.0 / 6.0_f64).sqrt()));
    assert!(close(d.max_weight, 3.0));
}

#[test]
fn dr_with_a_perfect_reward_model_has_no_variance_from_its_correction() {
    // Rewards are a deterministic function of (context, action); the model is that function.
    let f = |x: &u8, a: usize| f64::from(*x) * 0.1 + a as f64 * 0.2;
    let target = |x: &u8| if *x == 0 { vec![0.0, 1.0, 0.0] } else { vec![0.2, 0.3, 0.5] };
    let log: Vec<Record<u8>> = (0..30)
        .map(|i| {
            let (x, a) = ((i % 2) as u8, i % 3);
            Record { context: x, action: a, reward: f(&x, a), propensity: 1.0 / 3.0 }
        })
        .collect();
    let ev = Evaluation::with_model(&log, &target, &f).unwrap();
    let dr = ev.estimate(Estimator::Dr).unwrap();
    // Every correction w (r − q̂) is 0, so DR is the mean of the direct terms and its
    // variance is theirs alone.
    let direct: Vec<f64> = log.iter().map(|r| target(&r.context).iter().enumerate().map(|(a, p)| p * f(&r.context, a)).sum()).collect();
    let expected = observed_mean(&direct).unwrap();
    assert!(close(dr.value, expected.value));
    assert!(close(dr.std_error, expected.std_error));
    // In one context the direct term is a constant: no variance at all, while IPS has some.
    let one: Vec<Record<u8>> = log.into_iter().filter(|r| r.context == 1).collect();
    let ev = Evaluation::with_model(&one, &target, &f).unwrap();
    let dr = ev.estimate(Estimator::Dr).unwrap();
    assert!(close(dr.value, 0.1 + 0.2 * 0.3 + 0.4 * 0.5), "{}", dr.value);
    assert!(dr.std_error < 1e-12, "{}", dr.std_error);
    assert!(ev.estimate(Estimator::Ips).unwrap().std_error > 0.01);
}

#[test]
fn dr_with_a_zero_reward_model_is_ips() {
    let ev = Evaluation::with_model(&six(), &always(2, 3), &|_: &(), _| 0.0).unwrap();
    assert_eq!(ev.estimate(Estimator::Dr).unwrap(), ev.estimate(Estimator::Ips).unwrap());
}

#[test]
fn snips_does_not_move_when_every_propensity_is_scaled() {
    let log = six();
    let target = |_: &()| vec![0.6, 0.3, 0.1];
    let base = Evaluation::new(&log, &target).unwrap().estimate(Estimator::Snips).unwrap();
    let halved: Vec<_> = log.iter().map(|r| Record { propensity: r.propensity * 0.5, ..r.clone() }).collect();
    let scaled = Evaluation::new(&halved, &target).unwrap().estimate(Estimator::Snips).unwrap();
    assert!(close(base.value, scaled.value) && close(base.std_error, scaled.std_error));
    // IPS doubles.
    let ips = |l: &[Record<()>]| Evaluation::new(l, &target).unwrap().estimate(Estimator::Ips).unwrap().value;
    assert!(close(ips(&halved), 2.0 * ips(&log)));
}

/// A log of `n` records from logging policy `mu`, Bernoulli rewards with means `means`.
fn simulated(n: usize, mu: &[f64], means: &[f64], rng: &mut SmallRng) -> Vec<Record<()>> {
    (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let a = mu.iter().position(|p| {
                acc += p;
                u < acc
            });
            let a = a.unwrap_or(mu.len() - 1);
            let reward = if rng.random::<f64>() < means[a] { 1.0 } else { 0.0 };
            rec(a, reward, mu[a])
        })
        .collect()
}

#[test]
fn the_95_percent_intervals_cover_the_true_value_about_95_times_in_100() {
    let (mu, means, pi) = ([0.5, 0.3, 0.2], [0.1, 0.3, 0.6], vec![0.1, 0.2, 0.7]);
    let truth: f64 = pi.iter().zip(means).map(|(p, m)| p * m).sum();
    // A biased reward model: DR stays unbiased, its interval still covers.
    let model = |_: &(), _| 0.3;
    let mut rng = SmallRng::seed_from_u64(7);
    let runs = 400;
    let mut covered = [0usize; 3];
    for _ in 0..runs {
        let log = simulated(500, &mu, &means, &mut rng);
        let target = |_: &()| pi.clone();
        let ev = Evaluation::with_model(&log, &target, &model).unwrap();
        for (c, e) in covered.iter_mut().zip(Estimator::ALL) {
            *c += usize::from(ev.estimate(e).unwrap().interval.contains(truth));
        }
    }
    for (c, e) in covered.iter().zip(Estimator::ALL) {
        let rate = *c as f64 / runs as f64;
        assert!((0.91..=0.985).contains(&rate), "{}: coverage {rate}", e.name());
    }
}

#[test]
fn the_bootstrap_is_reproducible_from_its_seed_and_agrees_with_the_normal_interval_on_a_large_log() {
    let mut rng = SmallRng::seed_from_u64(11);
    let log = simulated(4000, &[0.5, 0.3, 0.2], &[0.1, 0.3, 0.6], &mut rng);
    let ev = Evaluation::with_model(&log, &|_: &()| vec![0.1, 0.2, 0.7], &|_: &(), _| 0.3).unwrap();
    for e in Estimator::ALL {
        let a = ev.bootstrap(e, 400, &mut SmallRng::seed_from_u64(3)).unwrap();
        let b = ev.bootstrap(e, 400, &mut SmallRng::seed_from_u64(3)).unwrap();
        assert_eq!(a, b);
        let normal = ev.estimate(e).unwrap().interval;
        assert!((a.width() / normal.width() - 1.0).abs() < 0.2, "{}: {a:?} vs {normal:?}", e.name());
        assert!((a.low - normal.low).abs() < 0.2 * normal.width(), "{}: {a:?} vs {normal:?}", e.name());
    }
}

#[test]
fn bad_input_is_refused_with_the_record_it_is_in() {
    let t = uniform(3);
    let err = |log: Vec<Record<()>>| Evaluation::new(&log, &t).unwrap_err();
    assert_eq!(err(vec![]), OpeError::EmptyLog);
    assert_eq!(err(vec![rec(0, 1.0, 0.5)]), OpeError::TooFewRecords { records: 1 });
    assert_eq!(err(vec![rec(0, 1.0, 0.5), rec(1, 0.0, 0.0)]), OpeError::Propensity { index: 1, value: 0.0 });
    assert_eq!(err(vec![rec(0, 1.0, -0.1), rec(1, 0.0, 0.5)]), OpeError::Propensity { index: 0, value: -0.1 });
    assert_eq!(err(vec![rec(0, 1.0, 1.5), rec(1, 0.0, 0.5)]), OpeError::Propensity { index: 0, value: 1.5 });
    assert!(matches!(err(vec![rec(0, 1.0, f64::NAN), rec(1, 0.0, 0.5)]), OpeError::Propensity { index: 0, .. }));
    assert!(matches!(err(vec![rec(0, 1.0, 0.5), rec(1, f64::NAN, 0.5)]), OpeError::Reward { index: 1, .. }));
    assert_eq!(err(vec![rec(0, 1.0, 0.5), rec(3, 0.0, 0.5)]), OpeError::ActionOutOfRange { index: 1, action: 3, actions: 3 });
    let two = vec![rec(0, 1.0, 0.5), rec(1, 0.0, 0.5)];
    let e = Evaluation::new(&two, &|_: &()| vec![0.5, 0.6]).unwrap_err();
    assert!(matches!(e, OpeError::TargetSum { index: 0, .. }), "{e}");
    let e = Evaluation::new(&two, &|_: &()| vec![1.5, -0.5]).unwrap_err();
    assert_eq!(e, OpeError::TargetProbability { index: 0, action: 0, value: 1.5 });
    let e = Evaluation::with_model(&two, &uniform(2), &|_: &(), a| if a == 1 { f64::NAN } else { 0.0 }).unwrap_err();
    assert!(matches!(e, OpeError::Prediction { index: 0, action: 1, .. }), "{e}");
    let ev = Evaluation::new(&two, &always(2, 3)).unwrap();
    assert_eq!(ev.estimate(Estimator::Dr), Err(OpeError::NoRewardModel));
    assert_eq!(ev.estimate(Estimator::Snips), Err(OpeError::NoSupport));
    assert_eq!(ev.estimate(Estimator::Ips).map(|e| e.value), Ok(0.0));
    assert_eq!(ev.diagnostics().ess, 0.0);
    assert_eq!(ev.bootstrap(Estimator::Ips, 0, &mut SmallRng::seed_from_u64(1)), Err(OpeError::NoResamples));
    assert_eq!(ev.bootstrap(Estimator::Snips, 10, &mut SmallRng::seed_from_u64(1)), Err(OpeError::NoSupport));
    assert_eq!(observed_mean(&[]), Err(OpeError::EmptyLog));
    assert!(matches!(observed_mean(&[0.0, f64::INFINITY]), Err(OpeError::Reward { index: 1, .. })));
    assert!(OpeError::Propensity { index: 4, value: 0.0 }.to_string().contains("record 4"));
}

/// A log over `n` actions with arbitrary propensities and rewards, and a target over them.
fn any_log() -> impl Strategy<Value = (usize, Vec<(usize, f64, f64)>, Vec<f64>)> {
    (2usize..6).prop_flat_map(|n| {
        let rows = prop::collection::vec((0..n, 0.0f64..1.0, 0.01f64..=1.0), 2..60);
        let target = prop::collection::vec(0.0f64..1.0, n).prop_map(|w| {
            let s: f64 = w.iter().sum();
            if s > 0.0 { w.iter().map(|x| x / s).collect() } else { vec![1.0 / w.len() as f64; w.len()] }
        });
        (Just(n), rows, target)
    })
}

proptest! {
    #[test]
    fn ips_of_the_logging_policy_is_the_mean_reward(
        (n, rows, _) in any_log(),
    ) {
        // A non-uniform logging policy (μ(a) ∝ a + 1), the logged propensities taken from it.
        let mu: Vec<f64> = (0..n).map(|a| 1.0 + a as f64).map(|w| w / (n * (n + 1) / 2) as f64).collect();
        let log: Vec<_> = rows.iter().map(|&(a, r, _)| rec(a, r, mu[a])).collect();
        let ev = Evaluation::new(&log, &|_: &()| mu.clone()).unwrap();
        let mean = observed_mean(&log.iter().map(|r| r.reward).collect::<Vec<_>>()).unwrap();
        prop_assert!(close(ev.estimate(Estimator::Ips).unwrap().value, mean.value));
        prop_assert!(close(ev.estimate(Estimator::Snips).unwrap().value, mean.value));
    }

    #[test]
    fn snips_stays_within_the_rewards_and_ignores_the_scale_of_propensities(
        (_, rows, pi) in any_log(),
        scale in 0.05f64..1.0,
    ) {
        let log: Vec<_> = rows.iter().map(|&(a, r, p)| rec(a, r, p)).collect();
        let scaled: Vec<_> = rows.iter().map(|&(a, r, p)| rec(a, r, p * scale)).collect();
        let target = |_: &()| pi.clone();
        let (a, b) = (Evaluation::new(&log, &target).unwrap(), Evaluation::new(&scaled, &target).unwrap());
        match (a.estimate(Estimator::Snips), b.estimate(Estimator::Snips)) {
            (Ok(x), Ok(y)) => {
                let (lo, hi) = rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), r| (l.min(r.1), h.max(r.1)));
                prop_assert!(x.value >= lo - 1e-12 && x.value <= hi + 1e-12);
                prop_assert!((x.value - y.value).abs() < 1e-9 && (x.std_error - y.std_error).abs() < 1e-9);
            }
            (Err(x), Err(y)) => prop_assert_eq!(x, y),
            (x, y) => prop_assert!(false, "{x:?} vs {y:?}"),
        }
        let d = a.diagnostics();
        prop_assert!(d.ess <= d.records as f64 + 1e-9);
        prop_assert!(d.ess == 0.0 || d.ess >= 1.0 - 1e-9);
    }

    #[test]
    fn no_input_makes_an_estimator_panic(
        rows in prop::collection::vec((0usize..4, prop::num::f64::ANY, prop::num::f64::ANY), 0..8),
        pi in prop::collection::vec(prop::num::f64::ANY, 0..4),
        q in prop::num::f64::ANY,
    ) {
        let log: Vec<_> = rows.iter().map(|&(a, r, p)| rec(a, r, p)).collect();
        if let Ok(ev) = Evaluation::with_model(&log, &|_: &()| pi.clone(), &|_: &(), _| q) {
            for e in Estimator::ALL {
                let _ = ev.estimate(e);
                let _ = ev.bootstrap(e, 5, &mut SmallRng::seed_from_u64(0));
            }
            let _ = ev.diagnostics();
        }
    }
}
