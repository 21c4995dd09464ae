document.getElementById('failing').addEventListener('change',function(e){
  document.querySelectorAll('tr.host').forEach(function(r){
    r.style.display=(e.target.checked&&!r.classList.contains('failing'))?'none':'';});});
document.getElementById('expand').addEventListener('click',function(){
  document.querySelectorAll('td.s-drift details,td.s-error details').forEach(
    function(d){d.open=!d.open;});});
