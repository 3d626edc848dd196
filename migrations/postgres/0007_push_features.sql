-- What the push-response model saw when a push was planned (its features, JSON): the push
-- log then trains the model on exactly what the policy saw.
alter table pushes add column features json;
