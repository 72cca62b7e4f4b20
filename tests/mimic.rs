//! `course::mimic`: the width solver, the mimic's targets, a student that already is the teacher,
//! the deep-teacher generator and the scores, each against what follows from its definition.

use gradflow::course::mimic::{
    argmax, deep_teacher_data, gaussian, matching_shallow, matching_width, mimic_data, scores, teacher_targets,
};
use gradflow::course::width::{one_hidden_params, trained_params};
use gradflow::data::Dataset;
use gradflow::optim::Sgd;
use gradflow::spec::{Activation, Loss, Model};
use gradflow::train::Trainer;

/// d → h₁ → … → c: Σ (fan-in + 1)·fan-out over the layers.
fn mlp_params(d: usize, hidden: &[usize], c: usize) -> usize {
    let sizes: Vec<usize> = std::iter::once(d).chain(hidden.iter().copied()).chain([c]).collect();
    sizes.windows(2).map(|w| (w[0] + 1) * w[1]).sum()
}

#[test]
fn the_matching_width_is_the_nearest_count_and_the_model_has_it() {
    for (d, hidden, c) in [(64, vec![128, 128, 128], 10), (16, vec![128, 128, 128], 10), (5, vec![7, 3], 2)] {
        let teacher = Model::mlp(d, &hidden, c, Activation::Relu).unwrap();
        let p = trained_params(&teacher);
        assert_eq!(p, mlp_params(d, &hidden, c), "the teacher's real count is the formula's");
        let w = matching_width(d, c, p);
        let shallow = matching_shallow(&teacher).unwrap();
        assert_eq!(trained_params(&shallow), one_hidden_params(d, w, c), "the model's real count is the formula's");
        // Counts step by one hidden unit's d + 1 + c, so the nearest is within half a step, and
        // no other width is nearer (checked against every width up to twice as many).
        let gap = one_hidden_params(d, w, c).abs_diff(p);
        assert!(2 * gap <= d + 1 + c, "d {d}, c {c}: gap {gap}");
        for other in 1..2 * w + 2 {
            assert!(one_hidden_params(d, other, c).abs_diff(p) >= gap, "width {other} is nearer than {w}");
        }
    }
    // An exact count is met exactly; below one unit's worth the width is 1.
    assert_eq!(matching_width(64, 10, one_hidden_params(64, 300, 10)), 300);
    assert_eq!(matching_width(64, 10, 3), 1);
}

fn small_digits_like(n: usize, seed: u64) -> Dataset {
    let x = gaussian(n * 6, seed);
    let labels = x.chunks(6).map(|r| argmax(&r[..3]) as u32).collect();
    Dataset::new(x, labels, 6, 3, "test data").unwrap()
}

fn trained_teacher() -> (Trainer, Dataset) {
    let data = small_digits_like(96, 3);
    let model = Model::mlp(6, &[8, 8], 3, Activation::Relu).unwrap();
    let mut teacher = Trainer::new(model).optimizer(Sgd::new(0.1)).epochs(3).batch_size(16).seed(2);
    teacher.fit(&data, None).unwrap();
    (teacher, data)
}

#[test]
fn the_mimic_targets_are_the_teachers_logits_bit_for_bit() {
    let (mut teacher, data) = trained_teacher();
    let mimic = teacher_targets(&mut teacher, &data).unwrap();
    let logits = teacher.predict(&data.x).unwrap();
    let t = mimic.targets.as_ref().unwrap();
    assert_eq!(t.k, 3);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&t.values), bits(&logits));
    assert_eq!(mimic.x, data.x, "the inputs are the teacher's own training inputs");
}

#[test]
fn a_student_that_is_the_teacher_has_zero_mimic_loss_and_zero_gradient() {
    let (mut teacher, data) = trained_teacher();
    let mimic = teacher_targets(&mut teacher, &data).unwrap();
    let params = teacher.network().unwrap().params().unwrap();
    let mut student = Trainer::new(teacher.model().clone()).loss(Loss::Mse).optimizer(Sgd::new(0.5)).epochs(1);
    student.network().unwrap().set_params(&params).unwrap();
    // The same parameters and inputs give the same outputs, so every squared difference is 0.
    assert_eq!(student.evaluate(&mimic).unwrap().loss, 0.0);
    // The mse gradient is 2(y − t)/n = 0 exactly, so an epoch of SGD moves nothing.
    let history = student.fit(&mimic, None).unwrap();
    assert_eq!(history.last().unwrap().train_loss, 0.0);
    assert_eq!(student.network().unwrap().params().unwrap(), params);
}

#[test]
fn the_generator_is_deterministic_per_seed_and_labels_by_its_teachers_argmax() {
    let (a, params) = deep_teacher_data(500, 4, &[16, 16], 5, 2.0, 11).unwrap();
    let (b, params_b) = deep_teacher_data(500, 4, &[16, 16], 5, 2.0, 11).unwrap();
    assert_eq!((&a, &params), (&b, &params_b));
    let (c, _) = deep_teacher_data(500, 4, &[16, 16], 5, 2.0, 12).unwrap();
    assert_ne!(a.x, c.x);
    let model = Model::mlp(4, &[16, 16], 5, Activation::Tanh).unwrap();
    // The parameters are the model's initialisation for the seed, scaled by the gain (2 is a
    // power of two: the product is exact).
    let init = model.init_params(11);
    assert!(params.iter().zip(&init).all(|(p, i)| *p == 2.0 * i));
    let mut net = Trainer::new(model);
    net.network().unwrap().set_params(&params).unwrap();
    let logits = net.predict(&a.x).unwrap();
    let argmaxes: Vec<u32> = logits.chunks(5).map(|r| argmax(r) as u32).collect();
    assert_eq!(a.labels, argmaxes);
}

#[test]
fn gaussian_draws_have_mean_zero_and_variance_one() {
    // 40 000 draws: the mean's std is 1/200 and the variance estimate's √(2/40 000) ≈ 0.0071;
    // 5 std bounds are 0.025 and 0.035.
    let v = gaussian(40_000, 5);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 0.025, "mean {mean}");
    assert!((var - 1.0).abs() < 0.035, "variance {var}");
}

#[test]
fn scores_match_the_closed_forms() {
    // Equal logits: cross-entropy ln c, and the argmax is the first class.
    let s = scores(&[0.5; 8], &[0, 1], 4).unwrap();
    assert!((s.cross_entropy - 4f64.ln()).abs() < 1e-12);
    assert_eq!(s.accuracy, 0.5);
    // A margin L on the right class: ln(1 + (c − 1)e^{−L}); the large one must not overflow.
    for l in [1.0f32, 5.0, 200.0] {
        let s = scores(&[l, 0.0, 0.0], &[0], 3).unwrap();
        let want = (1.0 + 2.0 * (-(l as f64)).exp()).ln();
        assert!((s.cross_entropy - want).abs() < 1e-12 * want.max(1e-300) + 1e-15, "L {l}");
        assert_eq!(s.accuracy, 1.0);
    }
    assert!(scores(&[0.0; 5], &[0, 1], 3).is_err());
}

#[test]
fn mimic_data_refuses_logits_of_the_wrong_shape() {
    let data = small_digits_like(4, 1);
    assert!(mimic_data(&data, vec![0.0; 11], 3).is_err());
    assert!(mimic_data(&data, vec![f32::NAN; 12], 3).is_err());
    let ok = mimic_data(&data, vec![1.0; 12], 3).unwrap();
    assert!(ok.is_regression() && ok.targets.unwrap().k == 3);
}

#[test]
fn compare_seed_trains_the_fourth_net_only_with_unlabelled_inputs_of_whole_rows() {
    use gradflow::course::mimic::{compare_seed, MimicSetup};
    let train = small_digits_like(32, 4);
    let test = small_digits_like(16, 5);
    let teacher = Model::mlp(6, &[4, 4], 3, Activation::Relu).unwrap();
    let setup = MimicSetup { epochs: 1, batch_size: 16, optimizer: Sgd::new(0.1).into() };
    let none = compare_seed(&teacher, &train, &[], &test, &setup, 0).unwrap();
    assert!(none.mimic_more.is_none());
    let more = compare_seed(&teacher, &train, &gaussian(6 * 8, 9), &test, &setup, 0).unwrap();
    assert!(more.mimic_more.is_some());
    // The three nets do not see the unlabelled inputs: the same seed gives the same scores.
    assert_eq!((none.teacher, none.shallow, none.mimic), (more.teacher, more.shallow, more.mimic));
    // 47 values are not whole rows of 6 features.
    assert!(compare_seed(&teacher, &train, &gaussian(47, 9), &test, &setup, 0).is_err());
}
